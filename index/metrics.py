"""Code statistics: per-level utilisation and perplexity, collisions of full codes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def group_sizes(codes: np.ndarray) -> np.ndarray:
    """For every item, how many items (itself included) share its full code."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    n = int(codes.shape[0])
    sizes = group_sizes(codes)
    distinct = int(np.unique(codes, axis=0).shape[0]) if n else 0
    return {
        "items": n,
        "distinct_codes": distinct,
        # items beyond the first with each code: the convention of "554 colliding items of 4,344"
        "duplicate_items": n - distinct,
        "collision_rate": (n - distinct) / n if n else 0.0,
        "items_sharing_a_code": int((sizes > 1).sum()),
        "largest_group": int(sizes.max()) if n else 0,
    }


def level_stats(codes: np.ndarray, sizes: Sequence[int]) -> dict[str, list]:
    used, util, ppl = [], [], []
    n = max(len(codes), 1)
    for level, k in enumerate(sizes):
        counts = np.bincount(codes[:, level], minlength=k) if len(codes) else np.zeros(k)
        p = counts[counts > 0] / n
        used.append(int((counts > 0).sum()))
        util.append(round(used[-1] / k, 6))
        ppl.append(round(float(np.exp(-(p * np.log(p)).sum())), 4) if p.size else 0.0)
    return {"codes_used": used, "utilisation": util, "perplexity": ppl}


def code_stats(codes: np.ndarray, sizes: Sequence[int]) -> dict[str, Any]:
    return {**collision_stats(codes), **level_stats(codes, sizes)}
