"""All-prefix training: every target of a user's window supervised in one forward pass.

The per-sample recipe encodes a user's history once for every training target (a sequence of
``n`` items costs ``n`` encoder passes). Here a *window* of up to ``max_history + 1`` consecutive
training items is encoded once with a **causal** item encoder (position ``j`` sees the task token
and items ``1..j``, never later ones), and the decoder predicts item ``j + 1`` from encoder
positions ``0..j`` (a per-target cross-attention mask): each target sees exactly the prefix a
per-sample example would give it, capped at the window. Windows tile each user's training
sequence from its end (the last one is the window the per-sample recipe's longest history uses),
so every training target is supervised once per epoch; an earlier window's first targets see
fewer than ``max_history`` items.

Needs pooled item inputs (one encoder position per item) and the causal encoder, which the model
records (``genrec_causal_encoder``) so evaluation encodes histories the same way: at inference the
decoder sees every item position, as the last target of a window does. Supported tasks: sequence
tasks whose history and target share a modality (``seqrec``, ``seqimage``), whose windows hold
their own targets' codes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from genrec.data_pipeline import LABEL_PAD, Part
from genrec.tasks import get_task

PREFIX_TASKS = ("seqrec", "seqimage")


def check_prefix_tasks(tasks: Sequence[str]) -> None:
    bad = [t for t in tasks if t not in PREFIX_TASKS]
    if bad:
        raise ValueError(f"--prefix-training supports the tasks {', '.join(PREFIX_TASKS)} (history and target of one "
                         f"modality); drop {', '.join(bad)} or train without it")


class PrefixTrainSet:
    """Windows as examples, with the :class:`genrec.data_pipeline.TrainSet` interface the loop uses.

    Example ``g``: source ``[task] + codes(window items 1..k) + [</s>]`` and targets ``[k, w + 1]``:
    row ``j`` is item ``j + 1``'s code and ``</s>`` (the last row: the sample's own target).
    """

    def __init__(self, parts: Sequence[Part], seed: int, max_history: int):
        self.seed = seed
        self.srcs: list[np.ndarray] = []
        self.tgts: list[np.ndarray] = []
        self.keys: list[tuple[str, str]] = []
        for part in parts:
            if not len(part):
                continue
            task = get_task(part.task)
            if part.task not in PREFIX_TASKS:
                raise ValueError(f"prefix training cannot use task {part.task}")
            enc = part.variants[0]
            users = np.asarray(part.users)
            lens = enc.source_lengths()
            width = enc.tgt.shape[1] - 1
            # samples are in user order, prefixes ascending: the last one of each user has the longest history
            last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
            first = np.r_[0, last[:-1] + 1]
            for a, b in zip(first, last):
                # tile from the end: the sample H items earlier starts the previous window
                step = max_history if max_history > 0 else b - a + 1
                for i in range(b, a - 1, -step):
                    src = enc.source(i)
                    k = (int(lens[i]) - 2) // width                      # history items in the window
                    # the k targets after the window's first item; with windows H samples apart
                    # (history capped at H) consecutive windows cover disjoint, adjacent targets
                    body = src[1:-1].reshape(k, width)
                    rows = np.concatenate([body[1:], enc.tgt[i:i + 1, :width]], axis=0)
                    tgt = np.concatenate([rows, np.full((k, 1), enc.tgt[i, -1], dtype=rows.dtype)], axis=1)
                    self.srcs.append(src)
                    self.tgts.append(tgt)
                    self.keys.append((part.dataset, task.directions[0].target))
        self._src_len = np.array([len(s) for s in self.srcs], dtype=np.int64)
        self._n_tgt = np.array([int((t[:, 0] != LABEL_PAD).sum() * t.shape[1]) for t in self.tgts], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.srcs)

    def variant_choice(self, epoch: int) -> np.ndarray:
        return np.zeros(len(self), dtype=np.int64)

    def source_lengths(self, choice: np.ndarray) -> np.ndarray:
        return self._src_len

    def target_tokens(self, idx: np.ndarray, choice: np.ndarray) -> int:
        return int(self._n_tgt[idx].sum())

    def batches(self, epoch: int, batch_size: int, group_by_length: bool = False,
                choice: np.ndarray | None = None) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, 0xBA7])
        perm = rng.permutation(len(self))
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]

    def examples(self, idx: Sequence[int], choice: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [self.srcs[int(g)] for g in idx], [self.tgts[int(g)] for g in idx]

    def target_keys(self, idx: Sequence[int], choice: np.ndarray) -> list[tuple[str, str]]:
        return [self.keys[int(g)] for g in idx]


def collate_prefix(srcs: Sequence[np.ndarray], tgts: Sequence[np.ndarray], keys: Sequence, pad_id: int = 0
                   ) -> tuple[dict[str, torch.Tensor], list]:
    """Padded sources plus one decoder row per supervised target: ``(row -> example, encoder positions seen)``."""
    b = len(srcs)
    s_len = max(len(s) for s in srcs)
    input_ids = np.full((b, s_len), pad_id, dtype=np.int64)
    attention = np.zeros((b, s_len), dtype=np.int64)
    rows, seen, labels, row_keys = [], [], [], []
    t_len = max(t.shape[1] for t in tgts)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        input_ids[i, :len(s)] = s
        attention[i, :len(s)] = 1
        for j in range(t.shape[0]):
            if t[j, 0] == LABEL_PAD:
                continue
            rows.append(i)
            seen.append(j + 2)  # task token + items 1..j+1 (0-based row j predicts window item j+2)
            lab = np.full(t_len, LABEL_PAD, dtype=np.int64)
            lab[:t.shape[1]] = t[j]
            labels.append(lab)
            row_keys.append(keys[i])
    labels_t = torch.from_numpy(np.stack(labels))
    dec = torch.full_like(labels_t, pad_id)
    dec[:, 1:] = labels_t[:, :-1].clamp(min=0)
    dec[:, 1:][labels_t[:, :-1] == LABEL_PAD] = pad_id
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
            "rows": torch.tensor(rows), "seen": torch.tensor(seen), "decoder_input_ids": dec, "labels": labels_t}, row_keys
