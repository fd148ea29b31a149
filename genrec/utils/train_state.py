"""The resumable part of a checkpoint, one format for every training loop (generator, baselines,
quantizer): optimizer tensors and per-process RNG states in ``optimizer.safetensors``, everything
else (param groups, optimizer scalars, scheduler, grad scaler, RNG scalars) in
``training_state.json``. No pickle: loading a checkpoint runs no code."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "training_state.json"


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) random state."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_split(states: Sequence[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    info = []
    for r, s in enumerate(states):
        tensors[f"rng.{r}.torch"] = s["torch"]
        for i, c in enumerate(s.get("cuda") or []):
            tensors[f"rng.{r}.cuda.{i}"] = c
        name, keys, pos, has_gauss, cached = s["numpy"]
        tensors[f"rng.{r}.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
        version, py, gauss = s["python"]
        info.append({"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [version, list(py), gauss]})
    return tensors, info


def _rng_join(tensors: dict[str, torch.Tensor], info: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r, s in enumerate(info):
        name, pos, has_gauss, cached = s["numpy"]
        keys = tensors[f"rng.{r}.numpy"].numpy().astype(np.uint32)
        version, py, gauss = s["python"]
        cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith(f"rng.{r}.cuda.")),
                                           key=lambda k: int(k.rsplit(".", 1)[1]))]
        out.append({"python": (version, tuple(py), gauss), "numpy": (name, keys, pos, has_gauss, cached),
                    "torch": tensors[f"rng.{r}.torch"], "cuda": cuda})
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return obj


def save_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                        rngs: Sequence[dict[str, Any]] = (), scaler: Any = None,
                        extra: dict[str, Any] | None = None) -> None:
    """Write the two files into ``folder`` (a temporary folder the caller renames into place)."""
    folder = Path(folder)
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{key}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = v
    rng_tensors, rng_info = _rng_split(rngs)
    tensors.update({k: v.contiguous().cpu() for k, v in rng_tensors.items()})
    save_file(tensors, str(folder / OPTIM_FILE))
    state = {"optimizer": {"param_groups": _jsonable(sd["param_groups"]), "scalars": _jsonable(scalars)},
             "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
             "scaler": _jsonable(scaler.state_dict()) if scaler is not None else None,
             "rng": rng_info, **(extra or {})}
    (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")


def has_training_state(folder: str | Path) -> bool:
    return (Path(folder) / OPTIM_FILE).is_file() and (Path(folder) / STATE_FILE).is_file()


def load_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                        scaler: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Restore optimizer, scheduler and scaler in place; return (per-process RNG states, extra)."""
    from genrec.data import DataError

    folder = Path(folder)
    if not has_training_state(folder):
        raise DataError(folder, f"checkpoint has no training state ({OPTIM_FILE}, {STATE_FILE}); it cannot be resumed")
    try:
        tensors = load_file(str(folder / OPTIM_FILE), device="cpu")
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise DataError(folder, f"cannot read training state: {e}") from None
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for key, v in state["optimizer"]["scalars"].items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = v
    groups = state["optimizer"]["param_groups"]
    for g, live in zip(groups, optimizer.param_groups):
        for k, v in g.items():  # JSON turns tuples (betas) into lists; keep the optimizer's own types
            if isinstance(live.get(k), tuple) and isinstance(v, list):
                g[k] = tuple(v)
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    extra = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "scaler", "rng")}
    return _rng_join(tensors, state["rng"]), extra
