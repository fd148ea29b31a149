"""mHC residual streams (manifold-constrained hyper-connections) for the SASRec-style blocks.

The hidden state is ``n`` parallel streams ``x [B, L, n, d]``. Around block ``l`` (its residual
branch ``F_l(z) = block_l(z) - z``, since the SASRec block returns its own residual sum)::

    x <- H_res x + H_post^T F_l(H_pre x)

with per-token coefficients from the RMS-normalised flattened streams ``u = RMSNorm(vec x)``:
``H_pre = sigmoid(u W_pre + b_pre)`` ``[n]``, ``H_post = 2 sigmoid(u W_post + b_post)`` ``[n]`` and
``H_res = SinkhornKnopp(u W_res + b_res)`` ``[n, n]``, projected onto the doubly stochastic
matrices in the log domain (stable for large logits; ``iters`` row/column normalisations).

Initialisation (the network starts as the plain residual): the three projections ``W`` are zero;
the input is copied into every stream and the output is the streams' mean; ``b_post = 0``
(``H_post = 1``); ``b_res`` is 0 on the diagonal and -8 elsewhere (``H_res`` close to the identity);
``b_pre`` reads stream ``l mod n`` with weight ``1 - (n-1) eps`` and the others with ``eps``. The
``H_pre`` weights sum to 1 and every ``H_res`` row sums to 1, so identical streams stay identical
and the first forward pass equals the plain model's. The uneven ``H_pre`` breaks the symmetry
between streams: with uniform weights every stream would get the same gradient forever.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

PRE_EPS = 0.01
RES_OFF_DIAGONAL = -8.0


def sinkhorn_log(logits: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """``exp(logits)`` scaled to a doubly stochastic matrix over the last two dims (log-domain Sinkhorn-Knopp).

    Ends with a column normalisation: columns sum to 1 exactly, rows to within the convergence.
    """
    if iters < 1:
        raise ValueError(f"Sinkhorn needs at least one iteration, got {iters}")
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    for _ in range(iters):
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)
        z = z - torch.logsumexp(z, dim=-2, keepdim=True)
    return z.exp().to(logits.dtype)


class MHCMixer(nn.Module):
    """The coefficients and the stream update around one block."""

    def __init__(self, d: int, n: int, layer: int, iters: int = 20):
        super().__init__()
        if n < 1:
            raise ValueError(f"mHC needs at least one stream, got {n}")
        self.n, self.iters, self.layer = n, iters, layer
        self.norm = nn.RMSNorm(n * d, eps=1e-6, elementwise_affine=False)
        self.pre = nn.Linear(n * d, n)
        self.post = nn.Linear(n * d, n)
        self.res = nn.Linear(n * d, n * n)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        n = self.n
        with torch.no_grad():
            for lin in (self.pre, self.post, self.res):
                lin.weight.zero_()
            pre = torch.full((n,), PRE_EPS if n > 1 else 1.0)
            pre[self.layer % n] = 1.0 - (n - 1) * PRE_EPS if n > 1 else 1.0
            # logit, clamped so a single stream (weight 1) gets a large finite bias
            self.pre.bias.copy_(torch.logit(pre, eps=1e-6))
            self.post.bias.zero_()
            self.res.bias.copy_((torch.full((n, n), RES_OFF_DIAGONAL) * (1 - torch.eye(n))).flatten())

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = self.norm(x.flatten(-2))
        h_pre = torch.sigmoid(self.pre(u))
        h_post = 2 * torch.sigmoid(self.post(u))
        h_res = sinkhorn_log(self.res(u).unflatten(-1, (self.n, self.n)), self.iters)
        return h_pre, h_post, h_res

    def forward(self, x: torch.Tensor, block: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        h_pre, h_post, h_res = self.coefficients(x)
        z = (h_pre.unsqueeze(-1) * x).sum(-2)
        branch = block(z) - z
        return h_res @ x + h_post.unsqueeze(-1) * branch.unsqueeze(-2)


class MHCResidual(nn.Module):
    """``n`` streams through a list of blocks: copy in, mix around every block, average out."""

    def __init__(self, d: int, n: int, blocks: int, iters: int = 20):
        super().__init__()
        self.n = n
        self.mixers = nn.ModuleList(MHCMixer(d, n, layer, iters) for layer in range(blocks))

    def reset_parameters(self) -> None:
        for m in self.mixers:
            m.reset_parameters()

    def forward(self, x: torch.Tensor, blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
        if len(blocks) != len(self.mixers):
            raise ValueError(f"{len(blocks)} blocks for {len(self.mixers)} mHC mixers")
        s = x.unsqueeze(-2).expand(*x.shape[:-1], self.n, x.shape[-1])
        for mixer, block in zip(self.mixers, blocks):
            s = mixer(s, block)
        return s.mean(-2)


RESIDUALS = ("plain", "mhc")


def check_residual(residual: str, streams: int, iters: int) -> None:
    if residual not in RESIDUALS:
        raise ValueError(f"unknown residual {residual!r}; expected one of {RESIDUALS}")
    if residual == "mhc" and (streams < 1 or iters < 1):
        raise ValueError(f"mHC needs streams >= 1 and sinkhorn_iters >= 1, got {streams} and {iters}")


__all__ = ["MHCMixer", "MHCResidual", "RESIDUALS", "check_residual", "sinkhorn_log"]
