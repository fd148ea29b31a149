"""Leave-one-out splits: test = last item, validation = second to last, training = every earlier prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Sample:
    """One prediction: the ``history`` (oldest first, at most ``max_history`` items) and the next item."""

    user: int
    history: tuple[int, ...]
    target: int
    # When the dataset has times: the time of each history item (unix seconds).
    times: tuple[int | float, ...] | None = None


@dataclass
class Split:
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]


def _capped(items: Sequence[int], max_history: int) -> tuple[int, ...]:
    return tuple(items[-max_history:]) if max_history > 0 else tuple(items)


def leave_one_out(sequences: Sequence[Sequence[int]], max_history: int = 20,
                  times: Sequence[Sequence[int | float]] | None = None) -> Split:
    """Split chronological sequences the way the field does.

    For a sequence ``s`` of length ``n`` (``n >= 3``): training samples predict ``s[i]`` from
    ``s[:i]`` for ``1 <= i <= n - 3``; validation predicts ``s[n-2]`` from ``s[:n-2]``; test predicts
    ``s[n-1]`` from ``s[:n-1]`` (so the test history includes the validation item). Histories keep
    the ``max_history`` most recent items (``0`` = no cap). With ``times`` (parallel to
    ``sequences``) every sample also carries the times of its history.
    """
    if times is not None and len(times) != len(sequences):
        raise ValueError(f"{len(times)} time lists for {len(sequences)} sequences")
    train: list[Sample] = []
    valid: list[Sample] = []
    test: list[Sample] = []
    for user, seq in enumerate(sequences):
        n = len(seq)
        if n < 3:
            raise ValueError(f"user {user} has {n} interactions; leave-one-out needs at least 3")
        ts = None if times is None else times[user]
        if ts is not None and len(ts) != n:
            raise ValueError(f"user {user} has {n} interactions but {len(ts)} times")

        def sample(i: int) -> Sample:
            if ts is None:
                return Sample(user, _capped(seq[:i], max_history), int(seq[i]))
            return Sample(user, _capped(seq[:i], max_history), int(seq[i]), _capped(ts[:i], max_history))

        train.extend(sample(i) for i in range(1, n - 2))
        valid.append(sample(n - 2))
        test.append(sample(n - 1))
    return Split(train, valid, test)


def training_sequences(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """The part of each sequence a model may train on (everything before the validation item)."""
    return [list(s[:-2]) for s in sequences]


def popularity_counts(train_parts: Sequence[Sequence[int]], num_items: int):
    """``[num_items]`` float tensor: how often each item occurs in the training parts
    (:func:`training_sequences`): the popularity baseline's score, for the report and the baselines."""
    import torch

    flat = [i for s in train_parts for i in s]
    return torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=num_items).float()
