"""Codebook distance strategies: ``pairwise(x [n, d], codebook [K, d]) -> [n, K]`` (lower = closer)."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class Distance(Protocol):
    name: str

    def pairwise(self, x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor: ...

    def rowwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class SquaredL2:
    """Squared Euclidean distance (the published choice)."""

    name = "l2"

    def pairwise(self, x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        # |x|^2 - 2 x.c + |c|^2 is one matmul; clamp the tiny negatives float rounding makes.
        d = x.pow(2).sum(1, keepdim=True) - 2.0 * (x @ codebook.T) + codebook.pow(2).sum(1)[None, :]
        return d.clamp_min(0.0)

    def rowwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).pow(2).sum(1)


class Cosine:
    """1 - cosine similarity; ignores residual length, so deeper levels pick by direction only."""

    name = "cosine"

    # clamped like SquaredL2: a point against itself gives 1 - 1.0000001 in float rounding, and a
    # negative distance is a negative k-means++ sampling weight
    def pairwise(self, x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        return (1.0 - F.normalize(x, dim=1) @ F.normalize(codebook, dim=1).T).clamp_min(0.0)

    def rowwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1.0 - (F.normalize(x, dim=1) * F.normalize(y, dim=1)).sum(1)).clamp_min(0.0)


DISTANCES: dict[str, type] = {"l2": SquaredL2, "cosine": Cosine}


def get_distance(name: str) -> Distance:
    try:
        return DISTANCES[name]()
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; expected one of {', '.join(DISTANCES)}") from None
