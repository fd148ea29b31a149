"""What every trainable sequence baseline shares: masks, the next-item losses, full-ranking scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.baselines.chunked_ce import chunked_cross_entropy
from genrec.baselines.data import PAD
from genrec.utils.distill import mix_distill, softened_kl_sum


def causal_padding_mask(inputs: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]`` boolean mask, True = may NOT attend: future keys and padding keys.

    Only keys are masked. With right padding every row keeps key 0 (a real item), so no
    attention row is entirely masked and softmax never sees an all -inf row.
    """
    L = inputs.shape[1]
    future = torch.ones(L, L, dtype=torch.bool, device=inputs.device).triu(1)
    pad_keys = (inputs == PAD)[:, None, :]
    return future[None] | pad_keys


def heads_mask(inputs: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The mask above repeated per head, as ``nn.MultiheadAttention`` wants it: ``[B * H, L, L]``."""
    return causal_padding_mask(inputs).repeat_interleave(num_heads, dim=0)


class SeqRecModel(nn.Module):
    """A causal next-item model: ``encode`` gives one state per position, scored against items.

    ``forward`` returns the training loss (so DDP sees it); ``score`` is the full ranking.
    Subclasses implement ``encode(inputs) -> [B, L, d]`` and ``item_weights() -> [num_items, d]``.
    """

    num_items: int
    loss_type: str = "ce"

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_weights(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode(self, inputs: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        # time-aware models take ``encode(inputs, times)``; the others never see times
        return self.encode(inputs) if times is None else self.encode(inputs, times)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None = None,
                times: torch.Tensor | None = None, distill: "Distill | None" = None) -> torch.Tensor:
        hidden = self._encode(inputs, times)
        valid = targets != PAD
        h = hidden[valid]  # only real positions are scored: padded targets never enter the loss
        hard = self._hard_loss(h, targets[valid] - 1, negatives, valid)
        if distill is None:
            return hard
        with torch.no_grad():
            teacher = distill.teacher
            h_t = teacher._encode(inputs, times)[valid]
            w_t = teacher.item_weights()
        soft = distill_kl_mean(h, self.item_weights(), h_t, w_t, distill.temperature)
        return mix_distill(hard, soft, distill.temperature, distill.alpha)

    def _hard_loss(self, h: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None,
                   valid: torch.Tensor) -> torch.Tensor:
        weights = self.item_weights()
        if self.loss_type == "ce":
            # same value and gradients as F.cross_entropy(h @ weights.T, target), without the
            # [positions, items] buffers that cost a third of the CPU time in kernel page faults
            return chunked_cross_entropy(h, weights, target)
        if self.loss_type == "bce":
            if negatives is None:
                raise ValueError("the BCE loss needs one sampled negative per position")
            pos = (h * weights[target]).sum(-1)
            neg = (h * weights[negatives[valid]]).sum(-1)
            return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                    + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
        raise ValueError(f"unknown loss {self.loss_type!r}; expected 'ce' or 'bce'")

    @torch.no_grad()
    def score(self, inputs: torch.Tensor, lengths: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, num_items]`` scores from the state at each history's last item."""
        hidden = self._encode(inputs, times)
        last = hidden[torch.arange(inputs.shape[0], device=inputs.device), lengths - 1]
        return last @ self.item_weights().T


@dataclass(frozen=True)
class Distill:
    """A frozen teacher over the same catalogue and the softening of both distributions."""

    teacher: SeqRecModel
    temperature: float = 2.0
    alpha: float = 0.5


def distill_kl_mean(h: torch.Tensor, weights: torch.Tensor, h_t: torch.Tensor, w_t: torch.Tensor,
                    temperature: float, chunk: int = 1024) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) of the softened full-catalogue distributions,
    a chunk of positions at a time so no [positions, items] buffer of the whole batch exists."""
    total = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk):
        total = total + softened_kl_sum(h[i:i + chunk] @ weights.T, h_t[i:i + chunk] @ w_t.T, temperature)
    return total / max(h.shape[0], 1)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (``parameters()`` yields a tied tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
