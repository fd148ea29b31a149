"""Semantic initialisation of code-token embeddings from the quantizer that produced the codes.

Token ``<a_i>`` (level 0, code ``i``) starts as codeword ``i`` of the quantizer's first codebook,
``<b_j>`` as codeword ``j`` of the second, and so on, mapped to ``d_model`` by a fixed seeded random
projection and standardised per level to the scale of T5's own embedding initialisation (deeper,
residual codebooks have much smaller norms; without this their tokens would start near zero).
Dedup tokens and task tokens keep their random initialisation. Items whose codes share a prefix
thus start with related input embeddings, and (the output layer is tied) related output logits.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import torch

logger = logging.getLogger(__name__)

_CODEBOOK_KEY = re.compile(r"(?:^|\.)codebooks\.(\d+)$")


def codebook_file(path: str | Path) -> Path:
    """The quantizer weights of a run folder (``best/``), a checkpoint folder or a safetensors file."""
    p = Path(path)
    for cand in (p, p / "model.safetensors", p / "best" / "model.safetensors", p / "last" / "model.safetensors"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{p}: no quantizer weights (expected model.safetensors, best/ or last/)")


def load_codebooks(path: str | Path) -> list[torch.Tensor]:
    """The per-level codebooks ``[codes, dim]`` of a quantizer checkpoint, level order."""
    from safetensors.torch import load_file

    f = codebook_file(path)
    tensors = load_file(str(f))
    found = {int(m.group(1)): t for k, t in tensors.items() if (m := _CODEBOOK_KEY.search(k))}
    if not found or sorted(found) != list(range(len(found))):
        raise ValueError(f"{f}: no codebooks.0 .. codebooks.N tensors (is this a quantizer checkpoint of index.train?)")
    books = [found[i].float() for i in range(len(found))]
    if any(b.ndim != 2 or b.shape[1] != books[0].shape[1] for b in books):
        raise ValueError(f"{f}: codebooks of different dimensions {[tuple(b.shape) for b in books]}")
    return books


def check_fits(books: Sequence[torch.Tensor], codes: Sequence[Sequence[str]], where: str) -> None:
    """Every code level must have a codebook, and every code index a codeword."""
    levels = {len(c) for c in codes}
    pat = re.compile(r"<[a-zA-Z]_(\d+)>")
    main = min(levels)
    # a trailing dedup token (make_codes_unique) has no codebook
    if not (main == len(books) or (main == len(books) + 1 and len(levels) == 1 and
                                   all(c[-1][1].lower() == chr(ord("a") + len(books)) for c in codes))):
        raise ValueError(f"{where}: the codes have {main} levels, the quantizer {len(books)} codebooks")
    for level in range(len(books)):
        top = max(int(pat.fullmatch(c[level]).group(1)) for c in codes)
        if top >= books[level].shape[0]:
            raise ValueError(f"{where}: code index {top} at level {level} does not fit a codebook of "
                             f"{books[level].shape[0]} codewords")


def semantic_init_(model, tokenizer, books: Sequence[torch.Tensor], letters: str, seed: int = 0) -> int:
    """Overwrite the code-token rows of ``model``'s (tied) embedding in place; returns rows written."""
    emb = model.get_input_embeddings().weight
    d_model = emb.shape[1]
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(books[0].shape[1], d_model, generator=gen) / books[0].shape[1] ** 0.5
    std = float(getattr(model.config, "initializer_factor", 1.0))  # T5 initialises the shared embedding N(0, factor)
    vocab = tokenizer.get_vocab()
    n = 0
    with torch.no_grad():
        for level, book in enumerate(books):
            vec = book @ proj
            vec = (vec - vec.mean(0)) / vec.std().clamp(min=1e-8) * std
            for i in range(book.shape[0]):
                tok = vocab.get(f"<{letters[level]}_{i}>")
                if tok is not None:
                    emb[tok] = vec[i].to(emb.dtype)
                    n += 1
    return n
