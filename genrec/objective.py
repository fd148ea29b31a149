"""Training objectives of the generator: token cross-entropy over the full vocabulary, or over the
tokens that continue a valid code.

``full`` is the published objective: at every target position the softmax runs over the whole
vocabulary, so the model must first learn which of the 256^4 token sequences are items.

``constrained`` normalises each target position over the tokens that continue a valid code of the
target's modality and dataset (the same per-level trie tables the beam search uses, dedup level
included); after the last level only ``</s>`` is allowed, so that position costs exactly 0. Under
this objective a model's scores are log-probabilities of items, and the beam search renormalises
the same way (:func:`genrec.decoding.beam_search` with ``objective="constrained"``).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch

from genrec.decoding import CodeTrie
from genrec.utils.distill import softened_kl_sum

TrieKey = Hashable  # (dataset, modality)


def trie_nodes(trie: CodeTrie, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(node [n, L], column [n, L])``: the trie node before each level and the token's column in ``V_l``.

    Raises ValueError when a row is no valid code of the trie.
    """
    n, L = codes.shape
    if L != trie.levels:
        raise ValueError(f"targets have {L} code tokens, the trie {trie.levels} levels")
    node = torch.zeros(n, dtype=torch.long, device=codes.device)
    nodes, cols = [], []
    for level in range(L):
        vocab = trie.level_tokens[level]
        col = torch.searchsorted(vocab, codes[:, level].contiguous()).clamp(max=len(vocab) - 1)
        child = trie.children[level][node, col]
        bad = (vocab[col] != codes[:, level]) | (child < 0)
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} target(s) are not valid codes at level {level}")
        nodes.append(node)
        cols.append(col)
        node = child
    return torch.stack(nodes, 1), torch.stack(cols, 1)


def constrained_loss_sum(logits: torch.Tensor, labels: torch.Tensor, keys: Sequence[TrieKey],
                         tries: Mapping[TrieKey, CodeTrie], output_weight: torch.Tensor | None = None,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy of ``labels`` with each position normalised over the valid next tokens.

    ``logits [B, T, V]``, ``labels [B, T]`` (code tokens, ``</s>``, then -100 padding), ``keys[b]``:
    the trie of example ``b``. The ``</s>`` position has one allowed token and contributes 0.
    With ``output_weight [V, d]``, ``logits`` are the states ``[B, T, d]`` the output layer reads
    (:meth:`genrec.model.GenRecT5.output_states`), and only each level's columns are computed.
    ``label_smoothing`` eps mixes the one-hot target with the uniform distribution over the *allowed*
    tokens (not the vocabulary, whose other tokens have probability 0 here): loss =
    (1 - eps) * NLL(target) + eps * mean NLL over the allowed tokens.
    """
    total = logits.new_zeros((), dtype=torch.float32)
    for key in dict.fromkeys(keys):
        trie = tries[key]
        rows = torch.tensor([i for i, k in enumerate(keys) if k == key], device=logits.device)
        L = trie.levels
        codes = labels[rows, :L].long()
        node, col = trie_nodes(trie, codes)
        for level in range(L):
            vocab = trie.level_tokens[level]
            if output_weight is None:
                lg = logits[rows, level].float().index_select(1, vocab)        # [n, |V_l|]
            else:
                lg = (logits[rows, level] @ output_weight.index_select(0, vocab).t()).float()
            allowed = trie.children[level][node[:, level]] >= 0
            lg = lg.masked_fill(~allowed, float("-inf"))
            lse = torch.logsumexp(lg, dim=1)
            nll = lse - lg.gather(1, col[:, level:level + 1]).squeeze(1)
            if label_smoothing > 0:
                mean_allowed = lg.masked_fill(~allowed, 0.0).sum(1) / allowed.sum(1)
                nll = (1 - label_smoothing) * nll + label_smoothing * (lse - mean_allowed)
            total = total + nll.sum()
    return total


def full_loss_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed token cross-entropy over the whole vocabulary (smoothing, if any, over the whole vocabulary too)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1).long(),
                           ignore_index=-100, reduction="sum", label_smoothing=label_smoothing)


def distill_kl_sum(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, keys: Sequence[TrieKey] | None,
                   tries: Mapping[TrieKey, CodeTrie] | None, temperature: float) -> torch.Tensor:
    """Summed per-position KL divergence from the teacher's softened next-token distribution to the
    student's, over the same support as the hard loss: the valid next tokens under ``constrained``
    (``tries`` given), the whole vocabulary under ``full`` (positions whose label is -100 skipped)."""
    if not tries:
        keep = labels.reshape(-1) != -100
        V = student.size(-1)
        return softened_kl_sum(student.reshape(-1, V)[keep], teacher.reshape(-1, V)[keep], temperature)
    total = student.new_zeros((), dtype=torch.float32)
    for key in dict.fromkeys(keys):
        trie = tries[key]
        rows = torch.tensor([i for i, k in enumerate(keys) if k == key], device=student.device)
        node, _ = trie_nodes(trie, labels[rows, :trie.levels].long())
        for level in range(trie.levels):  # the </s> position has one allowed token: KL 0
            vocab = trie.level_tokens[level]
            allowed = trie.children[level][node[:, level]] >= 0
            s = student[rows, level].float().index_select(1, vocab).masked_fill(~allowed, float("-inf"))
            t = teacher[rows, level].float().index_select(1, vocab).masked_fill(~allowed, float("-inf"))
            total = total + softened_kl_sum(s, t, temperature)
    return total
