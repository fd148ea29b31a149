"""Quantizer strategies behind one interface: RQ-VAE (MLP auto-encoder + residual VQ) and RQ-KMeans.

Both expose ``latent(x)`` (the space that is quantized), ``rq`` (the residual quantizer with its
codebooks and distance), ``encode(x)`` (nearest code at every level), ``reconstruct(x)`` and
``fit_codebooks(x)`` (k-means; a no-op once the persisted ``initialised`` flag is set).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from index.config import QuantizerConfig
from index.distances import Distance, get_distance
from index.kmeans import kmeans
from index.sinkhorn import sinkhorn_assign

logger = logging.getLogger(__name__)


@dataclass
class QuantizeOutput:
    quantized: torch.Tensor  # sum of chosen codewords, straight-through w.r.t. the input
    codes: torch.Tensor  # [n, levels] int64
    loss: torch.Tensor  # mean over levels of codebook + beta * commitment
    residual: torch.Tensor  # what is left after the last level


class ResidualQuantizer(nn.Module):
    """``levels`` codebooks, each quantizing what the previous levels left over."""

    def __init__(self, levels: int, codebook_size: int, dim: int, distance: Distance, beta: float = 0.25,
                 sinkhorn_eps: tuple[float, ...] | None = None, sinkhorn_iters: int = 50):
        super().__init__()
        self.distance = distance
        self.beta = beta
        self.sinkhorn_eps = tuple(sinkhorn_eps or [0.0] * levels)
        self.sinkhorn_iters = sinkhorn_iters
        bound = 1.0 / codebook_size
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.empty(codebook_size, dim).uniform_(-bound, bound)) for _ in range(levels))
        # Persisted with the weights: resuming or re-loading must never re-run the k-means init.
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def levels(self) -> int:
        return len(self.codebooks)

    @property
    def sizes(self) -> list[int]:
        return [int(c.shape[0]) for c in self.codebooks]

    @property
    def dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    def _pick(self, r: torch.Tensor, level: int, balanced: bool) -> torch.Tensor:
        with torch.no_grad():
            d = self.distance.pairwise(r, self.codebooks[level])
            eps = self.sinkhorn_eps[level]
            if balanced and eps > 0 and r.shape[0] > 1:
                return sinkhorn_assign(d, eps, self.sinkhorn_iters)
            return d.argmin(dim=1)

    def forward(self, z: torch.Tensor, balanced: bool = False) -> QuantizeOutput:
        """Quantize ``z`` level by level; ``balanced`` uses Sinkhorn where a level's epsilon > 0."""
        residual = z
        total = torch.zeros_like(z)
        losses = []
        codes = []
        for level, codebook in enumerate(self.codebooks):
            idx = self._pick(residual, level, balanced)
            q = codebook[idx]
            # Codebook term moves codewords to the residuals; commitment (beta) pulls the encoder's
            # partial sums towards the codewords, as in RQ-VAE: |z - sg(q_1 + ... + q_l)|^2.
            losses.append(F.mse_loss(q, residual.detach()) + self.beta * F.mse_loss(residual, q.detach()))
            residual = residual - q.detach()
            total = total + q
            codes.append(idx)
        quantized = z + (total - z).detach()  # straight-through estimator
        return QuantizeOutput(quantized, torch.stack(codes, dim=1), torch.stack(losses).mean(), residual)

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code at every level, [n, levels]."""
        return self.forward(z, balanced=False).codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks))

    @torch.no_grad()
    def path_costs(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Sum over levels of the distance between each residual and its chosen codeword, [n]."""
        residual = z
        cost = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
        for level, cb in enumerate(self.codebooks):
            q = cb[codes[:, level]]
            cost += self.distance.rowwise(residual, q).double()
            residual = residual - q
        return cost

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, generator: torch.Generator) -> list[int]:
        """Move codes that no row of ``z`` is nearest to onto random residuals of ``z``, level by level.

        Without this, codewords stranded when the encoder's output drifts stay unused for good (the
        published Scientific RQ-VAE codes use 32 of 256 first-level codes). Returns restarts per level.
        """
        residual = z.detach().float()
        restarted = []
        for codebook in self.codebooks:
            assign = self.distance.pairwise(residual, codebook).argmin(1)
            dead = torch.nonzero(torch.bincount(assign, minlength=codebook.shape[0]) == 0).flatten()
            pick = torch.randperm(residual.shape[0], generator=generator)[: dead.numel()].to(residual.device)
            dead = dead[: pick.numel()]
            if dead.numel():
                codebook.data[dead] = residual[pick].to(codebook.dtype)
                assign = self.distance.pairwise(residual, codebook).argmin(1)
            restarted.append(int(dead.numel()))
            residual = residual - codebook[assign]
        return restarted

    @torch.no_grad()
    def init_kmeans(self, z: torch.Tensor, iters: int, generator: torch.Generator) -> bool:
        """k-means on the residuals of ``z`` (a sample of all items), level by level.

        Returns False, changing nothing, if the codebooks were already initialised.
        """
        if bool(self.initialised):
            return False
        residual = z.detach().float()
        for level, codebook in enumerate(self.codebooks):
            centroids, assign = kmeans(residual, codebook.shape[0], iters, generator, self.distance)
            codebook.data.copy_(centroids.to(codebook.dtype))
            residual = residual - centroids[assign]
        self.initialised.fill_(True)
        return True


class SemanticQuantizer(nn.Module):
    """Interface shared by the strategies."""

    kind: str = ""
    trainable: bool = False
    rq: ResidualQuantizer

    def __init__(self, input_dim: int, cfg: QuantizerConfig):
        super().__init__()
        self.input_dim = input_dim
        self.cfg = cfg

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_latent(self, q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.rq.encode(self.latent(x))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.rq.decode(self.encode(x)))

    @torch.no_grad()
    def fit_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> bool:
        was_training = self.training
        self.eval()  # the init sees the same latents as inference (dropout / batch-norm off)
        try:
            return self.rq.init_kmeans(self.latent(x), self.cfg.kmeans_iters, generator)
        finally:
            self.train(was_training)


def mlp(sizes: list[int], dropout: float, batch_norm: bool) -> nn.Sequential:
    """Linear + [BatchNorm] + ReLU + [Dropout] between sizes; nothing after the last Linear."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class RQVAE(SemanticQuantizer):
    kind = "rqvae"
    trainable = True

    def __init__(self, input_dim: int, cfg: QuantizerConfig):
        super().__init__(input_dim, cfg)
        sizes = [input_dim, *cfg.hidden_dims, cfg.code_dim]
        self.encoder = mlp(sizes, cfg.dropout, cfg.batch_norm)
        self.decoder = mlp(sizes[::-1], cfg.dropout, cfg.batch_norm)
        self.rq = ResidualQuantizer(cfg.levels, cfg.codebook_size, cfg.code_dim, get_distance(cfg.distance),
                                    cfg.beta, cfg.sinkhorn_eps, cfg.sinkhorn_iters)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_latent(self, q: torch.Tensor) -> torch.Tensor:
        return self.decoder(q)

    def forward(self, x: torch.Tensor, balanced: bool = True, quantize: bool = True) -> dict[str, torch.Tensor]:
        if not quantize:  # auto-encoder warm-up: no codebooks yet
            recon = self.decoder(self.encoder(x))
            recon_loss = F.mse_loss(recon, x)
            zero = recon_loss.new_zeros(())
            return {"loss": recon_loss, "recon_loss": recon_loss, "quant_loss": zero, "codes": None, "recon": recon}
        out = self.rq(self.encoder(x), balanced=balanced)
        recon = self.decoder(out.quantized)
        recon_loss = F.mse_loss(recon, x)
        return {"loss": recon_loss + self.cfg.quant_weight * out.loss, "recon_loss": recon_loss,
                "quant_loss": out.loss, "codes": out.codes, "recon": recon}


class RQKMeans(SemanticQuantizer):
    """Residual k-means on the embeddings themselves: no network, fitted once."""

    kind = "rqkmeans"
    trainable = False

    def __init__(self, input_dim: int, cfg: QuantizerConfig):
        super().__init__(input_dim, cfg)
        self.rq = ResidualQuantizer(cfg.levels, cfg.codebook_size, input_dim, get_distance(cfg.distance),
                                    cfg.beta, cfg.sinkhorn_eps, cfg.sinkhorn_iters)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode_latent(self, q: torch.Tensor) -> torch.Tensor:
        return q


QUANTIZERS: dict[str, type[SemanticQuantizer]] = {"rqvae": RQVAE, "rqkmeans": RQKMeans}


def build_quantizer(cfg: QuantizerConfig, input_dim: int) -> SemanticQuantizer:
    cfg.validate()
    if input_dim < 1:
        raise ValueError(f"input dimension must be positive, got {input_dim}")
    return QUANTIZERS[cfg.kind](input_dim, cfg)
