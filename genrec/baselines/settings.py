"""Settings of the results benchmark's entries: per-entry training defaults, the common train
flags, ``--set`` overrides (``FIELD=VALUE`` for every entry that has the field, ``NAME.FIELD=VALUE``
for one entry) and the evaluation protocol they imply. Shared by the baselines' registry and the
generator's entry, which import this module and not each other."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from genrec.baselines.sampled_eval import protocol_name
from genrec.baselines.trainer import TrainConfig

# Per-entry training defaults (on top of TrainConfig's); chosen on validation NDCG@10.
# Instruments, 6 min on CPU: lr 2e-3 / dropout 0.2 reached validation NDCG@10 .105 at epoch 9;
# lr 1e-3 / dropout 0.3 was at .096 after 10 epochs and still climbing.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "sasrec": {"batch_size": 256, "lr": 2e-3},
    # BCE epochs are cheap but it needs many of them: validate every few epochs.
    "sasrec-bce": {"batch_size": 128, "lr": 1e-3, "eval_every": 5, "patience": 8},
    "tisasrec": {"batch_size": 256, "lr": 2e-3},  # as sasrec (not tuned separately)
    "sasrec-mhc": {"batch_size": 256, "lr": 2e-3},
    "tisasrec-mhc": {"batch_size": 256, "lr": 2e-3},
    "mmtransformer": {"batch_size": 256, "lr": 2e-3},
    "gpt": {"batch_size": 256, "lr": 2e-3},
    "gpt-textinit": {"batch_size": 256, "lr": 2e-3},
}
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "max_len", "max_steps",
               "group_batches", "eval_every", "patience", "eval_batch_size", "eval_negatives", "eval_negatives_seed",
               "seed", "cpu", "budget_clock", "distill_from", "distill_temperature", "distill_alpha")


def _convert(value: str, typ: Any, key: str) -> Any:
    typ = typ if isinstance(typ, type) else {"int": int, "float": float, "str": str, "bool": bool}.get(str(typ), str)
    if typ is bool:
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"--set {key}: expected true/false, got {value!r}")
    try:
        return typ(value)
    except ValueError:
        raise ValueError(f"--set {key}: cannot read {value!r} as {typ.__name__}") from None


def apply_overrides(obj: Any, name: str, overrides: list[str] | None) -> Any:
    """A copy of dataclass ``obj`` with the ``--set`` entries meant for registry entry ``name``."""
    fields = {f.name: f.type for f in dataclasses.fields(obj)}
    changes = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE or MODEL.FIELD=VALUE")
        key, value = item.split("=", 1)
        target, _, field = key.rpartition(".")
        if target and target != name:
            continue
        if field in fields:
            changes[field] = _convert(value, fields[field], key)
    return dataclasses.replace(obj, **changes)


def train_config(name: str, budget_minutes: float, args: argparse.Namespace) -> TrainConfig:
    cfg = dataclasses.replace(TrainConfig(), **TRAIN_DEFAULTS.get(name, {}))
    cfg = apply_overrides(cfg, name, getattr(args, "set", None))
    flags = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    cfg = dataclasses.replace(cfg, **flags, budget_minutes=budget_minutes)
    ckpt = getattr(args, "checkpoint_dir", None)
    if getattr(args, "output_dir", None):  # one run, folder named by the user
        cfg = dataclasses.replace(cfg, output_dir=str(args.output_dir))
    elif ckpt:  # many runs: <checkpoint_dir>/<dataset>/<model>
        cfg = dataclasses.replace(cfg, output_dir=str(Path(ckpt) / getattr(args, "_dataset_name", "dataset") / name))
    return cfg


def eval_protocol(name: str, args: argparse.Namespace) -> str:
    """The protocol entry ``name`` evaluates with (``--eval-negatives`` or ``--set eval_negatives=``)."""
    return protocol_name(train_config(name, 0.0, args).eval_negatives)
