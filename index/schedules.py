"""Named training schedules for ``python -m index.train`` (``--schedule``), picked by device.

``paper`` is the published MQL4GRec recipe (the ``TrainConfig`` defaults: 500 epochs of 2048 items,
constant learning rate), sized for a GPU: about 2 h 40 min on a 2-core CPU for 12k items.
``cpu`` is the schedule measured in ``benchmarks/bench_index.py`` (40 epochs of 256, 5 auto-encoder
warm-up epochs before the k-means init, cosine decay): about the same number of AdamW steps on a
few thousand items, about 10-16 minutes on 2 cores, and no collisions left after export.
``auto`` (the default) is ``cpu`` on a machine without a GPU and ``paper`` with one.

Precedence: TrainConfig defaults < schedule < ``--config`` file < explicit flags.
"""

from __future__ import annotations

from typing import Any

import torch

SCHEDULES: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 500, "batch_size": 2048, "ae_warmup_epochs": 0, "scheduler": "constant", "eval_every_epochs": 10},
    # Keep in step with benchmarks/bench_index.py's defaults (its figures are this schedule's evidence).
    "cpu": {"epochs": 40, "batch_size": 256, "ae_warmup_epochs": 5, "scheduler": "cosine", "eval_every_epochs": 5},
}
SCHEDULE_CHOICES = ("auto", *SCHEDULES)


def resolve_schedule(name: str, device: str = "auto") -> str:
    """The schedule ``name`` stands for: ``auto`` follows the device the run will use."""
    if name not in SCHEDULE_CHOICES:
        raise ValueError(f"schedule {name!r}: expected one of {', '.join(SCHEDULE_CHOICES)}")
    if name != "auto":
        return name
    if device == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda, cuda:1, ...") from None
    return "cpu" if kind == "cpu" else "paper"


def describe(name: str) -> str:
    s = SCHEDULES[name]
    return (f"{name} schedule: {s['epochs']} epochs, batch {s['batch_size']}, {s['ae_warmup_epochs']} auto-encoder "
            f"warm-up epochs, {s['scheduler']} lr")


def remaining(elapsed_s: float, done: int, start: int, total: int) -> str:
    """Estimated time left after ``done`` of ``total`` epochs, from this session's pace (since ``start``)."""
    from tqdm import tqdm

    if done <= start:
        return "?"
    return tqdm.format_interval(elapsed_s / (done - start) * (total - done))
