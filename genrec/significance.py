"""Paired comparison of two models on the same test users.

Two runs scored on one leave-one-out split give one NDCG@K per user each. Their difference is
best judged per user (the same users are hard for both models): a percentile bootstrap over users
of the mean difference and of the ratio of means (``scipy.stats.bootstrap`` with ``paired=True``),
and the paired t-test and Wilcoxon signed-rank test (``scipy.stats``). The scores of several seeds
of a model can be averaged per user first, which removes most of the seed noise a single pair
carries.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def ndcg_at_k(ranks: np.ndarray | Sequence[int], k: int = 10) -> np.ndarray:
    """Per-user NDCG@K of 1-based ranks (0 = the target was not ranked): ``1 / log2(rank + 1)`` in the top K."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"ranks must be one-dimensional, got shape {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any() or (r != np.round(r)).any():
        raise ValueError("ranks must be non-negative integers (0 for a target that was not ranked)")
    hit = (r >= 1) & (r <= k)
    out = np.zeros_like(r)
    out[hit] = 1.0 / np.log2(r[hit] + 1.0)
    return out


def align_users(a: Mapping[Any, float], b: Mapping[Any, float], name_a: str = "a", name_b: str = "b"
                ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The users both mappings score, in a fixed order; refuses two sets of users that differ."""
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        raise ValueError(f"{name_a} and {name_b} score different users: {len(only_a)} only in {name_a}, "
                         f"{len(only_b)} only in {name_b} (e.g. {sorted(only_a or only_b, key=str)[:3]}); "
                         "compare runs evaluated on the same split")
    users = sorted(a, key=str)
    return users, np.array([a[u] for u in users], dtype=np.float64), np.array([b[u] for u in users], dtype=np.float64)


def paired_comparison(a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> dict[str, float | int]:
    """Means, ``a - b`` and ``a / b`` with bootstrap intervals, and paired test p-values, of per-user scores."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two vectors of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 users, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-user scores hold NaN or infinite values")
    d = a - b
    rng = np.random.default_rng(seed)
    out: dict[str, float | int] = {"users": int(a.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                                   "diff": float(d.mean()), "confidence": confidence,
                                   "users_a_better": int((d > 0).sum()), "users_b_better": int((d < 0).sum())}
    if not d.any():  # identical scores: every resample agrees, and the tests are undefined
        out.update(diff_low=0.0, diff_high=0.0, t_pvalue=1.0, wilcoxon_pvalue=1.0)
    else:
        ci = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", random_state=rng).confidence_interval
        out.update(diff_low=float(ci.low), diff_high=float(ci.high),
                   t_pvalue=float(stats.ttest_rel(a, b).pvalue),
                   wilcoxon_pvalue=float(stats.wilcoxon(a, b, zero_method="zsplit").pvalue))
    if b.mean() > 0:
        ci = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) / np.maximum(y.mean(axis=axis), 1e-300),
                             paired=True, vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", random_state=rng).confidence_interval
        out.update(ratio=float(a.mean() / b.mean()), ratio_low=float(ci.low), ratio_high=float(ci.high))
    return out
