"""The block stack SASRec and TiSASRec share: item embeddings, pre-normalised attention blocks with
a point-wise feed-forward, optional mHC residual streams, Xavier initialisation, dot-product scores.

A model registers its own position (and interval) embeddings between ``item_emb`` and the blocks,
supplies its attention module, and says how a block calls it; parameter names and registration
order are those of the original classes, so checkpoints and seeded initialisations are unchanged.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import nn

from genrec.baselines.base import SeqRecModel
from genrec.baselines.data import PAD
from genrec.baselines.mhc import MHCResidual, check_residual

# (attention module, layer-normalised queries, block input) -> attention output
Attend = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def check_config(name: str, cfg) -> None:
    if cfg.loss not in ("ce", "bce"):
        raise ValueError(f"unknown {name} loss {cfg.loss!r}; expected 'ce' or 'bce'")
    if cfg.hidden % cfg.heads:
        raise ValueError(f"hidden size {cfg.hidden} is not divisible by {cfg.heads} heads")


class SelfAttentiveRec(SeqRecModel):
    """Subclasses call ``_add_item_embedding``, register their own embeddings, then ``_add_blocks``."""

    def _add_item_embedding(self, num_items: int, max_len: int, cfg) -> int:
        self.num_items, self.max_len, self.loss_type = num_items, max_len, cfg.loss
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=PAD)
        return cfg.hidden

    def _add_blocks(self, cfg, attention: Callable[[], nn.Module]) -> None:
        d = cfg.hidden
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.blocks))
        self.attns = nn.ModuleList(attention() for _ in range(cfg.blocks))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.blocks))
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.Dropout(cfg.dropout), nn.ReLU(), nn.Linear(d, d), nn.Dropout(cfg.dropout))
            for _ in range(cfg.blocks))
        self.last_norm = nn.LayerNorm(d, eps=1e-8)
        check_residual(cfg.residual, cfg.streams, cfg.sinkhorn_iters)
        self.mhc = MHCResidual(d, cfg.streams, cfg.blocks, cfg.sinkhorn_iters) if cfg.residual == "mhc" else None
        self.scale = math.sqrt(d)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The reference PyTorch ports initialise every matrix with Xavier-uniform.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        if self.mhc is not None:
            self.mhc.reset_parameters()  # undo Xavier: mHC starts as the plain residual

    def _run_blocks(self, x: torch.Tensor, keep: torch.Tensor, attend: Attend) -> torch.Tensor:
        blocks = [functools.partial(self._block, b, keep=keep, attend=attend) for b in range(len(self.attns))]
        if self.mhc is None:
            for block in blocks:
                x = block(x)
        else:
            x = self.mhc(x, blocks)
        return self.last_norm(x)

    def _block(self, b: int, x: torch.Tensor, keep: torch.Tensor, attend: Attend) -> torch.Tensor:
        # queries are layer-normalised, keys and values are not (the reference recipe)
        q = self.attn_norms[b](x)
        x = self.ffn_norms[b](q + attend(self.attns[b], q, x))
        return (x + self.ffns[b](x)) * keep

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight[1:]
