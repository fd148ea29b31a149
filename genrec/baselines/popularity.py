"""Most-popular baseline: every user gets the items ranked by training-part interaction counts."""

from __future__ import annotations

import torch

from genrec.baselines.data import SequenceData


class Popularity:
    def __init__(self, data: SequenceData):
        self.counts = data.popularity()

    def score(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.counts.to(inputs.device).expand(inputs.shape[0], -1)
