"""TiSASRec (Li, Wang & McAuley, WSDM 2020): SASRec whose attention sees time intervals.

Per user window, ``r_ij = min(round(|t_i - t_j| / s), k)`` where ``s`` is the smallest non-zero
interval between two real positions of the window (1 when every time is equal) and ``k`` is
``time_span``. Attention of query ``i`` on key ``j``::

    e_ij = Q_i . (K_j + P^K_j + R^K[r_ij]) / sqrt(d_head)      out_i = sum_j a_ij (V_j + P^V_j + R^V[r_ij])

with absolute-position embeddings ``P^K``/``P^V`` and interval embeddings ``R^K``/``R^V`` (as in
the reference implementation, the input gets no position embedding and the attention has no
output projection). Differences from the paper: ``s`` comes from the window the model sees, not
from the user's whole sequence (the same computation at training and evaluation, and no test
times enter it). Everything is vectorised: ``Q . R^K[r_ij]`` is a gather from ``Q @ R^K^T``
(``[B, H, L, k+1]``), and ``sum_j a_ij R^V[r_ij]`` sums the attention weights into ``k+1``
buckets (``scatter_add``) before one matmul, so no ``[B, L, L, d]`` tensor is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.baselines.base import causal_padding_mask
from genrec.baselines.data import PAD
from genrec.baselines.self_attentive import SelfAttentiveRec, check_config


@dataclass
class TiSASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    loss: str = "ce"  # "ce" (full softmax) or "bce" (one sampled negative per position)
    residual: str = "plain"  # "plain" or "mhc" (genrec.baselines.mhc: residual streams mixed per token)
    streams: int = 4  # mHC streams
    sinkhorn_iters: int = 20  # mHC: Sinkhorn-Knopp iterations
    time_span: int = 256  # k: intervals are clipped here (the paper's default)


def interval_matrix(times: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, L, L]`` long: ``|t_i - t_j|`` in units of the row's smallest non-zero interval, rounded, clipped at ``k``.

    ``times`` is ``[B, L]`` integer seconds, ``keep`` ``[B, L]`` marks real positions; pairs with a
    padding position get 0 (they are masked out of the attention anyway).
    """
    times = times.long()
    diff = (times[:, :, None] - times[:, None, :]).abs()
    pair = keep[:, :, None] & keep[:, None, :]
    big = torch.iinfo(torch.long).max
    scale = torch.where(pair & (diff > 0), diff, big).flatten(1).min(dim=1).values
    scale = torch.where(scale == big, torch.ones_like(scale), scale)[:, None, None]
    r = torch.div(diff + scale // 2, scale, rounding_mode="floor").clamp(max=k)  # round half up
    return torch.where(pair, r, torch.zeros_like(r))


class TimeAwareAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, H, L, dh]
        return x.view(x.shape[0], x.shape[1], self.heads, self.dh).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, pos_k: torch.Tensor, pos_v: torch.Tensor,
                int_k: torch.Tensor, int_v: torch.Tensor, intervals: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pos_*`` ``[L, d]``, ``int_*`` ``[k+1, d]``, ``intervals`` ``[B, L, L]``, ``mask`` True = may not attend."""
        B, L, d = queries.shape
        q = self._split(self.q(queries))
        k = self._split(self.k(keys) + pos_k)
        v = self._split(self.v(keys) + pos_v)
        ek = int_k.view(-1, self.heads, self.dh).transpose(0, 1)  # [H, R, dh]
        ev = int_v.view(-1, self.heads, self.dh).transpose(0, 1)
        idx = intervals[:, None].expand(B, self.heads, L, L)
        scores = q @ k.transpose(-1, -2) + torch.matmul(q, ek.transpose(-1, -2)[None]).gather(-1, idx)
        scores = (scores / math.sqrt(self.dh)).masked_fill(mask[:, None], float("-inf"))
        attn = self.dropout(F.softmax(scores, dim=-1))
        buckets = torch.zeros(B, self.heads, L, ek.shape[1], dtype=attn.dtype, device=attn.device)
        buckets.scatter_add_(-1, idx, attn)
        out = attn @ v + torch.matmul(buckets, ev[None])
        return out.transpose(1, 2).reshape(B, L, d)


class TiSASRec(SelfAttentiveRec):
    def __init__(self, num_items: int, max_len: int, cfg: TiSASRecConfig):
        super().__init__()
        check_config("TiSASRec", cfg)
        if cfg.time_span < 1:
            raise ValueError(f"time_span must be at least 1, got {cfg.time_span}")
        self.time_span = cfg.time_span
        d = self._add_item_embedding(num_items, max_len, cfg)
        self.pos_k, self.pos_v = nn.Embedding(max_len, d), nn.Embedding(max_len, d)
        self.int_k, self.int_v = nn.Embedding(cfg.time_span + 1, d), nn.Embedding(cfg.time_span + 1, d)
        self._add_blocks(cfg, lambda: TimeAwareAttention(d, cfg.heads, cfg.dropout))

    def encode(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        if times is None:
            raise ValueError("TiSASRec needs the interaction times of its inputs")
        if inputs.shape[1] > self.max_len:
            raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_len {self.max_len}")
        if times.shape != inputs.shape:
            raise ValueError(f"times have shape {tuple(times.shape)}, inputs {tuple(inputs.shape)}")
        real = inputs != PAD
        keep = real.unsqueeze(-1)
        intervals = interval_matrix(times, real, self.time_span)
        mask = causal_padding_mask(inputs)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        pos_k, pos_v = self.emb_dropout(self.pos_k(positions)), self.emb_dropout(self.pos_v(positions))
        int_k, int_v = self.emb_dropout(self.int_k.weight), self.emb_dropout(self.int_v.weight)
        x = self.emb_dropout(self.item_emb(inputs) * self.scale) * keep
        return self._run_blocks(x, keep, lambda attn, q, x: attn(q, x, pos_k, pos_v, int_k, int_v, intervals, mask))
