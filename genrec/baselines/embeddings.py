"""Item embeddings of a trained baseline, written as ``<ds>.emb-<name>.npy`` (row i = item i).

The semantic-ID quantizer then turns them into codes like any text or image embedding
(``python -m index.train --embedding <name>``): codes whose tree follows the items' collaborative
similarity instead of their text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genrec.data import RecDataset
from genrec.data.errors import DataError
from genrec.utils.io import atomic_save_npy


def item_embeddings(run: str | Path, dataset: RecDataset) -> np.ndarray:
    """``[num_items, d]`` output item table of the best model of the baseline run folder ``run``."""
    import json

    from genrec.baselines.registry import load_teacher

    state = Path(run) / "best" / "trainer_state.json"
    window = 0
    if state.is_file():
        rc = json.loads(state.read_text(encoding="utf-8")).get("run_config", {})
        window = rc.get("max_history", rc.get("max_len", 0))
    model = load_teacher(str(run), dataset, window, with_times=True)
    with torch.no_grad():
        table = model.item_weights().detach().float().cpu().numpy()
    if table.shape[0] != dataset.num_items:
        raise DataError(Path(run), f"item table has {table.shape[0]} rows, the dataset {dataset.num_items} items")
    if not np.isfinite(table).all():
        raise DataError(Path(run), "item table holds NaN or infinite values")
    return table


def write_item_embeddings(run: str | Path, dataset: RecDataset, name: str) -> Path:
    """Write the run's item table beside the dataset's other embeddings; returns the file."""
    out = Path(dataset.dir) / f"{dataset.name}.emb-{name}.npy"
    atomic_save_npy(out, item_embeddings(run, dataset).astype(np.float32))
    return out
