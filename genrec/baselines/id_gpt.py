"""A decoder-only (GPT-2 style) causal Transformer over item ids with tied output embeddings.

The body is ``transformers.GPT2Model`` built from a config (pre-LayerNorm blocks, GELU,
learned positions); the next-item logits are the final states times the same item-embedding
matrix that embeds the inputs. Optionally the item embeddings start from text embeddings,
projected to the hidden size by PCA, so items with similar text start close together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genrec.baselines.base import SeqRecModel
from genrec.baselines.data import PAD
from genrec.data import DataError


@dataclass
class IdGPTConfig:
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3
    init_text_emb: str = "none"  # embedding name to initialise item embeddings from, "auto", or "none"


def pca_project(emb: np.ndarray, dim: int, std: float) -> torch.Tensor:
    """Project ``[N, D]`` onto its top ``dim`` principal directions, rescaled to overall ``std``."""
    x = torch.tensor(np.asarray(emb, dtype=np.float32))
    x = x - x.mean(dim=0)
    q = min(dim, *x.shape)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    out = torch.zeros(x.shape[0], dim)
    out[:, :q] = u[:, :q] * s[:q]
    # Keep the weight scale GPT-2 expects; the text only decides directions and relative lengths.
    return out * (std / out.std().clamp(min=1e-12))


class IdGPT(SeqRecModel):
    def __init__(self, num_items: int, max_len: int, cfg: IdGPTConfig, text: np.ndarray | None = None):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        self.num_items, self.max_len = num_items, max_len
        config = GPT2Config(
            vocab_size=num_items + 1, n_positions=max_len, n_embd=cfg.hidden, n_layer=cfg.layers,
            n_head=cfg.heads, n_inner=4 * cfg.hidden, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout, pad_token_id=PAD, bos_token_id=None, eos_token_id=None,
            tie_word_embeddings=True, use_cache=False,
        )
        self.gpt = GPT2Model(config)
        if text is not None:
            if text.ndim != 2 or text.shape[0] != num_items:
                raise DataError(None, f"text embeddings have shape {tuple(text.shape)}; expected [{num_items}, dim]")
            with torch.no_grad():
                self.gpt.wte.weight[1:] = pca_project(text, cfg.hidden, config.initializer_range)
        with torch.no_grad():
            self.gpt.wte.weight[PAD].zero_()

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[1] > self.max_len:
            raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_len {self.max_len}")
        # Right padding: default positions 0..L-1 are the items' true positions.
        out = self.gpt(input_ids=inputs, attention_mask=(inputs != PAD).long())
        return out.last_hidden_state

    def item_weights(self) -> torch.Tensor:
        return self.gpt.wte.weight[1:]  # tied: the input embedding matrix is the output layer
