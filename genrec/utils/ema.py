"""An exponential moving average of a model's weights, kept beside the trained weights.

Evaluation and the best checkpoint use the average; training continues on the raw weights. The
average lives in torch's ``AveragedModel``; only the decay schedule is ours: it warms up as
``min(decay, (1 + n) / (10 + n))`` so that the first hundreds of updates do not keep the random
initialisation in the average (a fixed 0.999 still holds 37% of it after 1000 steps).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

EMA_FILE = "ema.safetensors"


def _warmed_ema(decay: float):
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


class WeightAverage:
    """EMA of ``model``'s parameters with a warmed-up decay; ``module`` is the averaged copy."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=_warmed_ema(decay))
        self.averaged.eval()

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    def update(self, model: torch.nn.Module) -> None:
        self.averaged.update_parameters(model)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_model

        # save_model (not save_file): T5 ties its embedding matrices, which save_file refuses
        save_model(self.averaged, str(Path(folder) / EMA_FILE))

    def load(self, folder: Path) -> bool:
        """Restore the average saved in ``folder``; False (average left as is) when it holds none."""
        from safetensors.torch import load_model

        path = Path(folder) / EMA_FILE
        if not path.is_file():
            return False
        missing, unexpected = load_model(self.averaged, str(path), strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: the weight average does not fit this model "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        return True
