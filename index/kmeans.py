"""k-means (k-means++ seeding + Lloyd) in torch, so it runs on the training device.

Used to initialise RQ-VAE codebooks and as the whole of the RQ-KMeans strategy. Empty clusters are
re-seeded with the worst-served points instead of being left as dead codes.
"""

from __future__ import annotations

import torch

from index.distances import Distance, SquaredL2


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator, distance: Distance) -> torch.Tensor:
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    closest = distance.pairwise(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        weights = closest.double().cpu()
        total = float(weights.sum())
        # Fewer distinct points than codes: the rest of the seeds are duplicates, any point will do.
        idx = int(torch.randint(n, (1,), generator=generator)) if total <= 0 else \
            int(torch.multinomial(weights / total, 1, generator=generator))
        centroids.append(x[idx])
        closest = torch.minimum(closest, distance.pairwise(x, x[idx:idx + 1])[:, 0])
    return torch.stack(centroids)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 100, generator: torch.Generator | None = None,
           distance: Distance | None = None, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``x`` [n, d] into ``k`` centroids; returns (centroids [k, d], assignment [n]).

    ``generator`` must be a CPU generator (seeding draws are made on the CPU for reproducibility
    across devices).
    """
    distance = distance or SquaredL2()
    generator = generator or torch.Generator().manual_seed(0)
    if x.ndim != 2:
        raise ValueError(f"k-means expects a 2-D [points, dim] tensor, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least as many points as codes: {n} points for {k} codes "
                         f"(use a smaller --codebook-size or more items)")
    if not torch.isfinite(x).all():
        raise ValueError("k-means input contains NaN or inf")
    x = x.float()
    centroids = kmeans_plus_plus(x, k, generator, distance)
    scale = float(x.var(dim=0).sum()) + 1e-12
    assign = distance.pairwise(x, centroids).argmin(dim=1)
    for _ in range(iters):
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        new = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            new[empty] = centroids[empty]
            d_own = distance.pairwise(x, new).gather(1, assign[:, None])[:, 0]
            worst = torch.argsort(d_own, descending=True)[: empty.numel()]
            new[empty] = x[worst]
        shift = float((new - centroids).pow(2).sum(1).max())
        centroids = new
        assign = distance.pairwise(x, centroids).argmin(dim=1)
        if shift <= tol * scale and not empty.numel():
            break
    return centroids, assign
