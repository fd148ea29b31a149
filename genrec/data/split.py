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


@dataclass
class Split:
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]


def _capped(items: Sequence[int], max_history: int) -> tuple[int, ...]:
    return tuple(items[-max_history:]) if max_history > 0 else tuple(items)


def leave_one_out(sequences: Sequence[Sequence[int]], max_history: int = 20) -> Split:
    """Split chronological sequences the way the field does.

    For a sequence ``s`` of length ``n`` (``n >= 3``): training samples predict ``s[i]`` from
    ``s[:i]`` for ``1 <= i <= n - 3``; validation predicts ``s[n-2]`` from ``s[:n-2]``; test predicts
    ``s[n-1]`` from ``s[:n-1]`` (so the test history includes the validation item). Histories keep
    the ``max_history`` most recent items (``0`` = no cap).
    """
    train: list[Sample] = []
    valid: list[Sample] = []
    test: list[Sample] = []
    for user, seq in enumerate(sequences):
        n = len(seq)
        if n < 3:
            raise ValueError(f"user {user} has {n} interactions; leave-one-out needs at least 3")
        for i in range(1, n - 2):
            train.append(Sample(user, _capped(seq[:i], max_history), int(seq[i])))
        valid.append(Sample(user, _capped(seq[: n - 2], max_history), int(seq[n - 2])))
        test.append(Sample(user, _capped(seq[: n - 1], max_history), int(seq[n - 1])))
    return Split(train, valid, test)


def training_sequences(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """The part of each sequence a model may train on (everything before the validation item)."""
    return [list(s[:-2]) for s in sequences]
