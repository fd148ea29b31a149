"""MmTransformer4Rec: a causal Transformer whose inputs are item content, not item ids.

Each position's input is the item's text embedding (and image embedding when the dataset has
one) concatenated and mapped by an MLP to the hidden size, plus a learned position. Pre-RMSNorm
Transformer layers with a causal mask and a key-padding mask; the final state is scored against a
learned item-embedding table; position-wise cross-entropy with padded targets ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genrec.baselines.base import SeqRecModel, heads_mask
from genrec.baselines.data import PAD
from genrec.data import DataError


@dataclass
class MmTransformerConfig:
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    ffn: int = 256
    dropout: float = 0.3
    text_emb: str = "auto"  # name in <ds>.emb-<name>.npy, "auto" = a known text embedding
    image_emb: str = "auto"  # "auto" = use one if present, "none" = text only


class RMSNormBlock(nn.Module):
    """Pre-norm Transformer layer: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.RMSNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.RMSNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + self.dropout(a)
        return x + self.dropout(self.ffn(self.norm2(x)))


class MmTransformer4Rec(SeqRecModel):
    def __init__(self, num_items: int, max_len: int, cfg: MmTransformerConfig,
                 text: np.ndarray, image: np.ndarray | None = None):
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden size {cfg.hidden} is not divisible by {cfg.heads} heads")
        parts = [("text", text)] + ([("image", image)] if image is not None else [])
        for modality, arr in parts:
            if arr.ndim != 2 or arr.shape[0] != num_items:
                raise DataError(None, f"{modality} embeddings have shape {tuple(arr.shape)}; expected "
                                f"[{num_items}, dim] (one row per item)")
        feats = np.concatenate([arr for _, arr in parts], axis=1)
        self.num_items, self.max_len, self.heads = num_items, max_len, cfg.heads
        self.modalities = [m for m, _ in parts]
        # Frozen content features with a zero row for padding; derived from data, so not saved.
        table = torch.zeros(num_items + 1, feats.shape[1])
        table[1:] = torch.from_numpy(feats)
        self.register_buffer("features", table, persistent=False)
        d = cfg.hidden
        self.proj = nn.Sequential(nn.Linear(feats.shape[1], 2 * d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        self.pos_emb = nn.Embedding(max_len, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(RMSNormBlock(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(d)
        self.item_emb = nn.Embedding(num_items, d)
        nn.init.normal_(self.item_emb.weight, std=d ** -0.5)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[1] > self.max_len:
            raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_len {self.max_len}")
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        x = self.dropout(self.proj(self.features[inputs]) + self.pos_emb(positions)[None])
        mask = heads_mask(inputs, self.heads)
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) * (inputs != PAD).unsqueeze(-1)

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight
