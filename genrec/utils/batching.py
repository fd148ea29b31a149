"""Length-grouped batching, shared by the generator's and the baselines' epoch plans."""

from __future__ import annotations

from typing import Callable

import numpy as np


def length_grouped(perm: np.ndarray, lengths: np.ndarray, batch_size: int, pool: int,
                   shuffle: Callable[[int], np.ndarray]) -> list[np.ndarray]:
    """Batches of ``perm`` with similar ``lengths`` in random order (Hugging Face's length-grouped
    sampling): the permutation is cut into pools of ``pool`` batches, each pool sorted by length
    (longest first, ties kept in permutation order) and cut into batches, and the batch order is
    ``shuffle(n_batches)``. Most histories are short, so a random batch would be padded to the
    longest one; grouping saves most of that work at the price of less random batch composition."""
    chunk = batch_size * max(pool, 1)
    batches: list[np.ndarray] = []
    for start in range(0, len(perm), chunk):
        c = perm[start:start + chunk]
        c = c[np.argsort(-lengths[c], kind="stable")]
        batches.extend(c[i:i + batch_size] for i in range(0, len(c), batch_size))
    if len(batches) > 1:
        batches = [batches[j] for j in shuffle(len(batches))]
    return batches
