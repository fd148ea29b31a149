"""Quantizer checkpoints: safetensors weights + JSON config, written atomically as one folder.

A checkpoint folder holds:

- ``config.json``: format tag, the full TrainConfig, input dim, modality, datasets, epoch, metrics;
- ``model.safetensors``: weights, codebooks and the ``initialised`` flag of the k-means init;
- for resumable ones also ``optimizer.safetensors`` (optimizer moments, torch RNG states) and
  ``trainer_state.json`` (optimizer hyper-parameters, scheduler, numpy/python RNG, counters).

No pickle anywhere: loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
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
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                     "python": [py[0], list(py[1]), py[2]]}


def _set_rng_state(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, state, gauss = info["python"]
    random.setstate((version, tuple(state), gauss))


def save_checkpoint(path: str | Path, model: SemanticQuantizer, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Write the folder atomically: a crash leaves the previous checkpoint, never a mix."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / MODEL_FILE), metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, **meta}, indent=2), encoding="utf-8")
        if optimizer is not None:
            sd = optimizer.state_dict()
            tensors: dict[str, torch.Tensor] = {}
            scalars: dict[str, Any] = {}
            for pid, st in sd["state"].items():
                for key, v in st.items():
                    if torch.is_tensor(v):
                        tensors[f"state.{pid}.{key}"] = v.detach().contiguous().cpu()
                    else:
                        scalars[f"{pid}.{key}"] = v
            rng_tensors, rng_info = _rng_state()
            tensors.update(rng_tensors)
            save_file(tensors, str(tmp / OPTIM_FILE), metadata={"format": FORMAT})
            state = {"optimizer": {"param_groups": sd["param_groups"], "scalars": scalars},
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "rng": rng_info, **(trainer_state or {})}
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
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


def load_training_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; return the remaining trainer counters."""
    path = Path(path)
    if not (path / OPTIM_FILE).is_file() or not (path / STATE_FILE).is_file():
        raise DataError(path, f"checkpoint has no training state ({OPTIM_FILE}, {STATE_FILE}); it cannot be resumed")
    try:
        tensors = load_file(str(path / OPTIM_FILE), device="cpu")
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise DataError(path, f"cannot read training state: {e}") from None
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for key, v in state["optimizer"]["scalars"].items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["optimizer"]["param_groups"]})
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(tensors, state["rng"])
    return {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")}
