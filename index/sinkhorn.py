"""Balanced code assignment with Sinkhorn-Knopp, in the log domain.

The published version exponentiates ``-d / eps`` in float64; with eps = 0.003 and distances scaled
to [-1, 1] that is exp(333), one step from overflow. Working with log-potentials and logsumexp
gives the same transport plan without any overflow, for any epsilon.
"""

from __future__ import annotations

import math

import torch


def scale_distances(d: torch.Tensor) -> torch.Tensor:
    """Map a batch's distances to [-1, 1] (as published) so epsilon means the same at every scale."""
    lo, hi = d.min(), d.max()
    mid = (hi + lo) / 2
    amplitude = (hi - mid) + 1e-5
    return (d - mid) / amplitude


@torch.no_grad()
def sinkhorn_plan(distances: torch.Tensor, epsilon: float, iters: int = 50) -> torch.Tensor:
    """Log of the entropic transport plan between n items (mass 1/n each) and K codes (1/K each)."""
    if epsilon <= 0:
        raise ValueError(f"Sinkhorn epsilon must be > 0, got {epsilon}")
    if distances.ndim != 2 or distances.shape[0] == 0:
        raise ValueError(f"expected a non-empty [items, codes] distance matrix, got shape {tuple(distances.shape)}")
    n, k = distances.shape
    log_q = -scale_distances(distances.double()) / epsilon
    log_q = log_q - torch.logsumexp(log_q.reshape(-1), dim=0)
    log_n, log_k = math.log(n), math.log(k)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_k  # every code gets 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_n  # every item gives 1/n
    return log_q


@torch.no_grad()
def sinkhorn_assign(distances: torch.Tensor, epsilon: float, iters: int = 50) -> torch.Tensor:
    """Code index per item [n] from the balanced plan (argmax of each item's row)."""
    return sinkhorn_plan(distances, epsilon, iters).argmax(dim=1)
