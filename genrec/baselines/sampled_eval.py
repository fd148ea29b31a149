"""The sampled evaluation protocol: the target ranked among N negatives instead of all items.

Many papers (SASRec, TiSASRec, ...) rank each user's held-out item against 100 items sampled
uniformly from those the user never interacted with. The project's default stays full ranking:
sampled metrics overstate quality and can even reorder models (Krichene & Rendle, "On Sampled
Metrics for Item Recommendation", KDD 2020). This module exists so that published sampled
numbers can be reproduced side by side, always labelled (``protocol_name``).

Negatives of user ``u`` are a pure function of ``(seed, u)``: the same for every model, every
batch order, every process and both the validation and the test split. They exclude the user's
whole sequence (training part, validation and test item), so neither target can be a negative.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

FULL = "full"


def protocol_name(num_negatives: int) -> str:
    """``"full"`` for 0 negatives, else ``"sampled-N"``: the label every result carries."""
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, (int, np.integer)):
        raise ValueError(f"eval_negatives must be an integer, got {num_negatives!r}")
    if num_negatives < 0:
        raise ValueError(f"eval_negatives must be 0 (full ranking) or a positive number of sampled negatives, "
                         f"got {num_negatives}")
    return FULL if num_negatives == 0 else f"sampled-{int(num_negatives)}"


def _sample_user(rng: np.random.Generator, seen: np.ndarray, num_items: int, n: int) -> np.ndarray:
    """``n`` distinct items outside the sorted unique array ``seen``, uniformly at random.

    Draws ``n`` distinct positions among the ``num_items - len(seen)`` unseen items and maps
    position ``r`` to its item without materialising the unseen list: ``seen[j] - j`` unseen
    items lie below ``seen[j]``, so the item is ``r`` plus the number of seen items with
    ``seen[j] - j <= r``.
    """
    picks = rng.choice(num_items - seen.size, size=n, replace=False)
    gaps = seen - np.arange(seen.size)
    return picks + np.searchsorted(gaps, picks, side="right")


class EvalNegatives:
    """Fixed sampled negatives for every user of a dataset (``[num_users, N]`` 0-based items).

    ``sequences``: each user's full interaction sequence (every item that is not a negative).
    ``num_negatives`` must leave at least one unsampled unseen item for every user: with all of
    them the "sample" is just filtered full ranking, a different protocol.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], num_items: int, num_negatives: int, seed: int = 0):
        self.protocol = protocol_name(num_negatives)
        if num_negatives == 0:
            raise ValueError("0 negatives means full ranking: evaluate without EvalNegatives")
        if seed < 0:
            raise ValueError(f"the protocol seed must be non-negative, got {seed}")
        if num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        self.num_items, self.num_negatives, self.seed = num_items, int(num_negatives), int(seed)
        seen = [np.unique(np.asarray(s, dtype=np.int64)) for s in sequences]
        for u, s in enumerate(seen):
            if s.size and (s[0] < 0 or s[-1] >= num_items):
                raise ValueError(f"user {u} has item {int(s[0] if s[0] < 0 else s[-1])} outside 0..{num_items - 1}")
        free = np.array([num_items - s.size for s in seen], dtype=np.int64)
        short = np.flatnonzero(free <= num_negatives)
        if short.size:
            u = int(short[0])
            raise ValueError(f"--eval-negatives {num_negatives} is too many: user {u} has only {int(free[u])} items "
                             f"it never interacted with ({short.size} users have at most {num_negatives}); "
                             f"use fewer than {int(free.min())} negatives, or 0 for full ranking")
        rows = [_sample_user(np.random.default_rng([self.seed, u]), s, num_items, self.num_negatives)
                for u, s in enumerate(seen)]
        self.table = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, self.num_negatives, dtype=torch.long)

    @property
    def num_users(self) -> int:
        return int(self.table.shape[0])

    def for_users(self, users: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``[B, N]`` negatives of the dataset users ``users``."""
        idx = torch.as_tensor(users, dtype=torch.long).view(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_users):
            raise ValueError(f"user index out of range 0..{self.num_users - 1}: "
                             "the negatives were built for another dataset")
        return self.table[idx]


def ranks_among_candidates(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among itself and its negatives, from full scores ``[B, num_items]``.

    Ties count against the target, as in ``genrec.metrics.ranks_from_scores``, so a constant
    scorer ranks last here too.
    """
    if negatives.dim() != 2 or negatives.shape[0] != targets.shape[0] or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"shapes do not match: scores {tuple(scores.shape)}, targets {tuple(targets.shape)}, "
                         f"negatives {tuple(negatives.shape)}")
    targets = targets.view(-1, 1)
    if (negatives == targets).any():
        raise ValueError("a sampled negative equals the target: negatives must exclude the user's items")
    candidates = torch.cat([targets, negatives], dim=1)
    chosen = scores.gather(1, candidates)
    return (chosen >= chosen[:, :1]).sum(dim=1)
