"""One name per setting across the project's configs. Earlier names still read, with a warning,
from config files, presets, ``--set`` and the command line."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

RENAMED = {"grad_clip": "max_grad_norm", "max_len": "max_history", "budget_minutes": "time_budget_minutes",
           "eval_every": "eval_every_epochs", "threads": "num_threads"}


def canonical(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with earlier field names replaced by today's (both given: an error naming ``where``)."""
    out = dict(raw)
    for old, new in RENAMED.items():
        if old in out:
            if new in out:
                raise ValueError(f"{where}: both {old} and {new} given; {old} is the earlier name of {new}")
            logger.warning("%s: %s is now called %s", where, old, new)
            out[new] = out.pop(old)
    return out
