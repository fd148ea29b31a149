"""Teacher-student distillation terms shared by the generator and the baselines."""

from __future__ import annotations

import torch


def softened_kl_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Summed KL(teacher || student) over rows of logits softened by ``temperature``; -inf = not allowed."""
    log_s = torch.log_softmax(student.float() / temperature, dim=-1)
    log_t = torch.log_softmax(teacher.float() / temperature, dim=-1)
    p_t = log_t.exp()
    # a masked token has p_t = 0 and contributes nothing (not 0 * (-inf - -inf) = nan)
    return torch.where(p_t > 0, p_t * (log_t - log_s), torch.zeros_like(p_t)).sum()


def mix_distill(hard: torch.Tensor, soft: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """``(1 - alpha) hard + alpha T^2 soft``: T^2 keeps the soft term's gradient scale independent of
    the temperature (Hinton et al. 2015)."""
    return (1 - alpha) * hard + alpha * temperature * temperature * soft
