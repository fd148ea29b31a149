"""Full-ranking HR@K and NDCG@K for leave-one-out (one relevant item per user).

HR@K = share of users whose target ranks in the top K. NDCG@K = mean over users of
``1 / log2(rank + 1)`` when ``rank <= K`` else 0 (the ideal DCG is 1 with one relevant item).
Ranks are 1-based; a missing target has rank 0 (never a hit).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS = (1, 5, 10, 20)
TABLE_KS = (1, 5, 10)  # the cut-offs the printed tables and the baselines report


def ranks_from_lists(ranked: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """1-based rank of each target in its ranked list (0 when absent)."""
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} targets")
    out = np.zeros(len(targets), dtype=np.int64)
    for i, (items, target) in enumerate(zip(ranked, targets)):
        for r, item in enumerate(items, start=1):
            if item == target:
                out[i] = r
                break
    return out


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each target among all items by score (full ranking, no sampling).

    Ties are broken pessimistically (an item scoring equal to the target counts as ranked above
    it), so a constant scorer cannot look good. ``exclude`` is an optional boolean mask
    ``[B, N]`` of items removed from the ranking (never the target).
    """
    target_scores = scores.gather(1, targets.view(-1, 1))
    ahead = scores >= target_scores
    if exclude is not None:
        ahead &= ~exclude
    # the target itself satisfies >=; it is counted as rank 1's "self", so rank = count.
    return ahead.sum(dim=1)


def metrics_from_ranks(ranks: Iterable[int] | np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"HR@K": ..., "NDCG@K": ...}`` averaged over users."""
    r = np.asarray(list(ranks) if not isinstance(ranks, (np.ndarray, torch.Tensor)) else ranks, dtype=np.float64)
    if isinstance(ranks, torch.Tensor):
        r = ranks.detach().cpu().numpy().astype(np.float64)
    if r.size == 0:
        raise ValueError("no users to evaluate")
    out: dict[str, float] = {}
    for k in ks:
        hit = (r >= 1) & (r <= k)
        out[f"HR@{k}"] = float(hit.mean())
        gains = np.zeros_like(r)
        gains[hit] = 1.0 / np.log2(r[hit] + 1.0)
        out[f"NDCG@{k}"] = float(gains.mean())
    out["users"] = int(r.size)
    return out


def format_table(rows: dict[str, dict[str, float]], ks: Sequence[int] = TABLE_KS) -> str:
    """A Markdown table: one row per run, HR@K and NDCG@K columns."""
    cols = [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks if k > 1]
    lines = ["| run | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" if c in m else "-" for c in cols) + " |")
    return "\n".join(lines)
