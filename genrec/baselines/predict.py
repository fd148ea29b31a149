"""Per-user test ranks of a finished baseline run, for paired comparisons with other models."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genrec.data import RecDataset
from genrec.data.errors import DataError


def test_ranks(run: str | Path, dataset: RecDataset, batch_size: int = 1024) -> dict[int, tuple[int, int]]:
    """``{user index: (target item, 1-based full-ranking rank)}`` of the run's best model on the test split.

    The ranking is the one the run's own test metrics come from (``genrec.baselines.trainer.evaluate``).
    """
    from genrec.baselines.registry import load_teacher, needs_times, sequence_data
    from genrec.baselines.settings import MODEL_DEFAULTS
    from genrec.baselines.trainer import rank_users

    run = Path(run)
    state = run / "best" / "trainer_state.json"
    if not state.is_file() or not (run / "best" / "model.safetensors").is_file():
        raise DataError(run, "not a finished baseline run (expected best/trainer_state.json and best/model.safetensors)")
    rc = json.loads(state.read_text(encoding="utf-8")).get("run_config", {})
    if rc.get("model") not in MODEL_DEFAULTS:
        raise DataError(state, f"run_config names no known baseline model ({rc.get('model')!r})")
    window = rc.get("max_history", rc.get("max_len", 0))
    model = load_teacher(str(run), dataset, window, with_times=True)
    model.eval()
    data = sequence_data(dataset, window, with_times=needs_times(type(MODEL_DEFAULTS[rc["model"]])(**rc["config"])))
    with torch.no_grad():
        users, ranks = rank_users(model.score, data.test, batch_size)
    targets = {s.user: s.target for s in data.test}
    return {int(u): (int(targets[u]), int(r)) for u, r in zip(users, ranks)}
