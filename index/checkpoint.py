"""Quantizer checkpoints: safetensors weights + JSON config, written atomically as one folder.

A checkpoint folder holds:

- ``config.json``: format tag, the full TrainConfig, input dim, modality, datasets, epoch, metrics;
- ``model.safetensors``: weights, codebooks and the ``initialised`` flag of the k-means init;
- in a training run's ``checkpoint-<step>/`` folders also what the one engine writes for every
  loop of the project (``genrec.utils.engine``: optimizer, scheduler, RNG and loop counters).

No pickle anywhere: loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genrec.data import DataError
from genrec.utils.io import atomic_dir
from index.config import TrainConfig
from index.quantizers import SemanticQuantizer, build_quantizer

FORMAT = "index-quantizer/1"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"


def write_model(folder: str | Path, model: SemanticQuantizer, meta: dict[str, Any]) -> None:
    """Weights and ``config.json`` into ``folder`` (the caller makes the write atomic)."""
    folder = Path(folder)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / MODEL_FILE), metadata={"format": FORMAT})
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **meta}, indent=2), encoding="utf-8")


def save_checkpoint(path: str | Path, model: SemanticQuantizer, meta: dict[str, Any]) -> Path:
    """A model-only checkpoint folder, written atomically (training checkpoints are the engine's)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_model(tmp, model, meta)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise DataError(path, "checkpoint folder not found")
    if not cfg_path.is_file() or not (path / MODEL_FILE).is_file():
        raise DataError(path, f"not a quantizer checkpoint (needs {CONFIG_FILE} and {MODEL_FILE})")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(cfg_path, f"invalid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(cfg_path, f"unknown checkpoint format {meta.get('format') if isinstance(meta, dict) else None!r}; "
                        f"expected {FORMAT}")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SemanticQuantizer, dict[str, Any]]:
    """Rebuild the quantizer from ``config.json`` and load its weights (including the init flag)."""
    path = Path(path)
    meta = read_meta(path)
    try:
        cfg = TrainConfig.from_dict(meta["config"])
        model = build_quantizer(cfg.quantizer, int(meta["input_dim"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path / CONFIG_FILE, f"invalid checkpoint config: {e}") from None
    try:
        weights = load_file(str(path / MODEL_FILE), device="cpu")
    except (SafetensorError, OSError) as e:
        raise DataError(path / MODEL_FILE, f"cannot read weights: {e}") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise DataError(path / MODEL_FILE, f"weights do not match the config: {str(e).splitlines()[0]}") from None
    return model.to(device), meta
