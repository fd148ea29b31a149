"""Tensors for the ID-sequence baselines, built from ``genrec.data`` (same split as genrec).

Item ids are shifted by one inside the models: ``0`` is padding, item ``i`` is token ``i + 1``.
Sequences are right-padded (oldest item first, padding after the last item), so under a causal
mask every query row, padded or not, can attend to at least the first item: no row is all -inf.

Training is sequence-to-sequence on the training part of each user's sequence (``seq[:-2]``):
input ``t[:-1]``, target ``t[1:]`` (last ``max_len`` positions). Validation predicts ``seq[-2]``
from ``seq[:-2]``; test predicts ``seq[-1]`` from ``seq[:-1]`` (histories capped at ``max_len``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from genrec.baselines.sampled_eval import EvalNegatives
from genrec.data import RecDataset, Sample, popularity_counts, training_sequences

PAD = 0


def pad_right(seqs: Sequence[Sequence[int]], length: int | None = None, shift: int = 1) -> torch.Tensor:
    """``[B, L]`` long tensor of ``item + shift`` values, right-padded with ``PAD``."""
    length = max((len(s) for s in seqs), default=0) if length is None else length
    out = torch.zeros(len(seqs), max(length, 1), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long) + shift
    return out


def trim(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop trailing all-padding columns (dynamic padding: a batch is as long as its longest row)."""
    width = int((tensors[0] != PAD).sum(dim=1).max().clamp(min=1))
    return tuple(t[:, :width] for t in tensors)


@dataclass
class SequenceData:
    """Training pairs and evaluation samples for one dataset and one ``max_len``."""

    num_items: int
    max_len: int
    inputs: torch.Tensor  # [U', L] shifted ids, right-padded
    targets: torch.Tensor  # [U', L] shifted ids, PAD where there is no target
    users: torch.Tensor  # [U'] dataset user index of each training row
    train_items: list[list[int]]  # per dataset user: the items a model may train on (seq[:-2])
    valid: list[Sample]
    test: list[Sample]
    times: torch.Tensor | None = None  # [U', L] int64 unix seconds of each input position (0 = padding)
    sequences: Sequence[Sequence[int]] | None = None  # per dataset user: the whole sequence (sampled evaluation)
    _negatives: dict[tuple[int, int], EvalNegatives] = field(default_factory=dict, init=False, repr=False,
                                                             compare=False)

    @classmethod
    def from_dataset(cls, dataset: RecDataset, max_len: int = 50, with_times: bool = False) -> "SequenceData":
        """``with_times``: also carry interaction times (time-aware models); an error without them."""
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        split = dataset.split(max_len, with_times=with_times)
        train_items = training_sequences(dataset.sequences)
        # a training part of one item has no (input, target) pair; the user is still evaluated
        rows = [(u, s[-(max_len + 1):]) for u, s in enumerate(train_items) if len(s) >= 2]
        inputs = pad_right([s[:-1] for _, s in rows], max_len)
        targets = pad_right([s[1:] for _, s in rows], max_len)
        users = torch.tensor([u for u, _ in rows], dtype=torch.long)
        times = None
        if with_times:
            windows = [dataset.times[u][: len(train_items[u])][-(max_len + 1):][:-1] for u, _ in rows]
            times = pad_times(windows, max_len)
        return cls(dataset.num_items, max_len, inputs, targets, users, train_items, split.valid, split.test, times,
                   dataset.sequences)

    @property
    def num_train_rows(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """``[U']`` number of real positions in each training row."""
        return (self.inputs != PAD).sum(dim=1)

    def train_batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, targets = trim(self.inputs[rows], self.targets[rows])
        return inputs, targets, self.users[rows]

    def train_times(self, rows: torch.Tensor, width: int) -> torch.Tensor | None:
        """``[B, width]`` input times of ``rows`` (the width ``train_batch`` trimmed to), or None."""
        return None if self.times is None else self.times[rows, :width]

    def eval_negatives(self, num_negatives: int, seed: int = 0) -> EvalNegatives:
        """The sampled-evaluation negatives (built once per ``(N, seed)``: every model shares them)."""
        if self.sequences is None:
            raise ValueError("sampled evaluation needs the users' full sequences; build SequenceData.from_dataset")
        key = (num_negatives, seed)
        if key not in self._negatives:
            self._negatives[key] = EvalNegatives(self.sequences, self.num_items, num_negatives, seed)
        return self._negatives[key]

    def popularity(self) -> torch.Tensor:
        """``[num_items]`` interaction counts over the training parts."""
        return popularity_counts(self.train_items, self.num_items)


def pad_times(seqs: Sequence[Sequence[int | float]], length: int | None = None) -> torch.Tensor:
    """``[B, L]`` int64 seconds, right-padded with 0 (padding positions are masked anyway)."""
    length = max((len(s) for s in seqs), default=0) if length is None else length
    out = torch.zeros(len(seqs), max(length, 1), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            out[i, : len(s)] = torch.as_tensor([round(t) for t in s], dtype=torch.long)
    return out


def eval_batches_with_times(samples: Sequence[Sample], batch_size: int):
    """Yield ``(inputs [B, L], lengths [B], targets [B], times [B, L])`` with 0-based targets;
    ``times`` are the histories' times (None when samples have no times)."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        inputs = pad_right([s.history for s in chunk])
        lengths = torch.tensor([len(s.history) for s in chunk], dtype=torch.long)
        targets = torch.tensor([s.target for s in chunk], dtype=torch.long)
        times = pad_times([s.times for s in chunk]) if chunk and chunk[0].times is not None else None
        yield inputs, lengths, targets, times


class NegativeSampler:
    """Uniform negatives that the user never interacted with (in the part the model trains on).

    Vectorised: draw uniformly for every position at once, find collisions with one
    ``searchsorted`` over sorted ``user * num_items + item`` keys, redraw only the collisions.
    """

    def __init__(self, user_items: Sequence[Sequence[int]], num_items: int, max_rounds: int = 50):
        self.num_items = num_items
        self.max_rounds = max_rounds
        keys = [u * num_items + i for u, items in enumerate(user_items) for i in set(items)]
        self.keys = torch.tensor(sorted(keys), dtype=torch.long)
        counts = torch.tensor([len(set(items)) for items in user_items], dtype=torch.long)
        full = torch.nonzero(counts >= num_items).flatten()
        if full.numel():
            raise ValueError(f"users {full[:5].tolist()} interacted with all {num_items} items: "
                             "no negative item exists for them")
        self._user_items = user_items

    def interacted(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean mask: did ``users`` (broadcast against ``items``) interact with ``items``?"""
        if self.keys.numel() == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        query = users * self.num_items + items
        pos = torch.searchsorted(self.keys, query).clamp(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def sample(self, users: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, length]`` 0-based negative items for the dataset users ``users [B]``."""
        users = users.view(-1, 1).expand(-1, length)
        items = torch.randint(self.num_items, users.shape, generator=generator)
        for _ in range(self.max_rounds):
            bad = self.interacted(users, items)
            n_bad = int(bad.sum())
            if n_bad == 0:
                return items
            items[bad] = torch.randint(self.num_items, (n_bad,), generator=generator)
        # Users who interacted with nearly every item: draw their few remaining collisions exactly.
        bad = self.interacted(users, items)
        for r, c in bad.nonzero().tolist():
            allowed = torch.ones(self.num_items, dtype=torch.bool)
            allowed[list(self._user_items[int(users[r, c])])] = False
            choices = allowed.nonzero().flatten()
            items[r, c] = choices[torch.randint(choices.numel(), (1,), generator=generator)]
        return items

