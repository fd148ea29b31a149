"""What the training loops share about time and stopping: a run's training clock that survives
resume, and the one all-reduce that makes every process take the same stop decision."""

from __future__ import annotations

import time

import torch


class RunClock:
    """Wall and this process's CPU seconds of training, counted on from what a checkpoint recorded.

    The CPU clock is what other jobs on a shared machine do not shrink (``--budget-clock cpu``)."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0):
        self._wall0 = time.perf_counter() - wall
        self._cpu0 = time.process_time() - cpu

    def wall(self) -> float:
        return time.perf_counter() - self._wall0

    def cpu(self) -> float:
        return time.process_time() - self._cpu0

    def spent(self, clock: str) -> float:
        """Seconds on the budget's clock: ``"cpu"`` or ``"wall"``."""
        return self.cpu() if clock == "cpu" else self.wall()


def any_process(accelerator, flag: bool) -> bool:
    """True on every process when any process says so: a stop one process takes alone would leave
    the others waiting in a collective. Free with one process."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)
