"""SASRec (Kang & McAuley, 2018): self-attentive sequential recommendation over item ids.

Follows the reference recipe: item embeddings scaled by sqrt(d) plus learned positions;
blocks of causal self-attention whose queries are layer-normalised (keys/values are not), then a
layer-normalised point-wise feed-forward with a residual; padded positions zeroed after every
block; a final LayerNorm; scores are dot products with the (shared) item embeddings. Trained
with BCE against one sampled negative per position (the classic recipe) or full-softmax CE.

Under full ranking with nothing excluded, BCE with negatives the user never saw has a blind spot:
history items are never negatives, and with shared input/output embeddings the model scores the
items just consumed highest (measured on Scientific: the top-1 item was a history item for 97% of
test users, HR@1 0.0006; uniform negatives over all items barely change that, since one draw per
position almost never hits a history item). Full-softmax CE pushes every other item down and does
not have this problem.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from genrec.baselines.base import SeqRecModel, heads_mask
from genrec.baselines.data import PAD
from genrec.baselines.mhc import MHCResidual, check_residual


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    loss: str = "ce"  # "ce" (full softmax) or "bce" (one sampled negative per position)
    residual: str = "plain"  # "plain" or "mhc" (genrec.baselines.mhc: residual streams mixed per token)
    streams: int = 4  # mHC streams
    sinkhorn_iters: int = 20  # mHC: Sinkhorn-Knopp iterations


class SASRec(SeqRecModel):
    def __init__(self, num_items: int, max_len: int, cfg: SASRecConfig):
        super().__init__()
        if cfg.loss not in ("ce", "bce"):
            raise ValueError(f"unknown SASRec loss {cfg.loss!r}; expected 'ce' or 'bce'")
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden size {cfg.hidden} is not divisible by {cfg.heads} heads")
        self.num_items, self.max_len, self.loss_type, self.heads = num_items, max_len, cfg.loss, cfg.heads
        d = cfg.hidden
        self.item_emb = nn.Embedding(num_items + 1, d, padding_idx=PAD)
        self.pos_emb = nn.Embedding(max_len, d)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.blocks))
        self.attns = nn.ModuleList(nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
                                   for _ in range(cfg.blocks))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(d, eps=1e-8) for _ in range(cfg.blocks))
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.Dropout(cfg.dropout), nn.ReLU(), nn.Linear(d, d), nn.Dropout(cfg.dropout))
            for _ in range(cfg.blocks))
        self.last_norm = nn.LayerNorm(d, eps=1e-8)
        check_residual(cfg.residual, cfg.streams, cfg.sinkhorn_iters)
        self.mhc = MHCResidual(d, cfg.streams, cfg.blocks, cfg.sinkhorn_iters) if cfg.residual == "mhc" else None
        self.scale = math.sqrt(d)
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference PyTorch port initialises every matrix with Xavier-uniform.
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        if self.mhc is not None:
            self.mhc.reset_parameters()  # undo Xavier: mHC starts as the plain residual

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[1] > self.max_len:
            raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_len {self.max_len}")
        keep = (inputs != PAD).unsqueeze(-1)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        x = self.item_emb(inputs) * self.scale + self.pos_emb(positions)[None]
        x = self.emb_dropout(x) * keep
        mask = heads_mask(inputs, self.heads)
        blocks = [functools.partial(self._block, b, mask=mask, keep=keep) for b in range(len(self.attns))]
        if self.mhc is None:
            for block in blocks:
                x = block(x)
        else:
            x = self.mhc(x, blocks)
        return self.last_norm(x)

    def _block(self, b: int, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.attn_norms[b](x)
        a, _ = self.attns[b](q, x, x, attn_mask=mask, need_weights=False)
        x = self.ffn_norms[b](q + a)
        return (x + self.ffns[b](x)) * keep

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight[1:]
