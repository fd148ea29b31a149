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
from genrec.utils.fields import RENAMED, canonical

PRESETS_FILE = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "presets.toml"


def load_presets(path: str | Path = PRESETS_FILE) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(model config per entry, TrainConfig overrides per entry) from a presets TOML file; an
    unknown architecture, model field or train field is an error naming the file and the entry."""
    import tomllib

    from genrec.baselines.id_gpt import IdGPTConfig
    from genrec.baselines.mm_transformer import MmTransformerConfig
    from genrec.baselines.sasrec import SASRecConfig
    from genrec.baselines.tisasrec import TiSASRecConfig

    kinds = {"sasrec": SASRecConfig, "tisasrec": TiSASRecConfig, "mmtransformer": MmTransformerConfig,
             "gpt": IdGPTConfig}
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read presets ({e})") from None
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    models, train = {}, {}
    for name, entry in raw.items():
        entry = dict(entry)
        kind, overrides = entry.pop("model", None), canonical(entry.pop("train", {}), f"{path}: [{name}] train")
        if kind not in kinds:
            raise ValueError(f"{path}: [{name}] model = {kind!r}; expected one of {', '.join(kinds)}")
        cls = kinds[kind]
        bad = sorted(set(entry) - {f.name for f in dataclasses.fields(cls)})
        bad_train = sorted(set(overrides) - train_fields)
        if bad or bad_train:
            raise ValueError(f"{path}: [{name}] unknown settings {bad + [f'train.{k}' for k in bad_train]}")
        models[name], train[name] = cls(**entry), dict(overrides)
    return models, train


# Per-entry model configs and training defaults (on top of TrainConfig's): genrec/configs/baselines/presets.toml
MODEL_DEFAULTS, TRAIN_DEFAULTS = load_presets()
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "max_grad_norm", "max_history", "max_steps",
               "group_batches", "eval_every_epochs", "patience", "eval_batch_size", "eval_negatives", "eval_negatives_seed",
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


def apply_overrides(obj: Any, name: str, overrides: list[str] | None, strict: bool = False) -> Any:
    """A copy of dataclass ``obj`` with the ``--set`` entries meant for registry entry ``name``.

    ``strict``: ``obj`` holds all of ``name``'s settings, so a ``name.FIELD`` it lacks is an error
    (a baseline's settings span two dataclasses, model and training, and each sees only its own)."""
    fields = {f.name: f.type for f in dataclasses.fields(obj)}
    changes = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE or MODEL.FIELD=VALUE")
        key, value = item.split("=", 1)
        target, _, field = key.rpartition(".")
        if target and target != name:
            continue
        field = RENAMED.get(field, field) if field not in fields else field
        if field in fields:
            changes[field] = _convert(value, fields[field], key)
        elif strict and target:  # meant for this entry alone: an unknown field must not pass silently
            raise ValueError(f"--set {item!r}: {name} has no setting {field!r} (it has: {', '.join(sorted(fields))})")
    return dataclasses.replace(obj, **changes)


def train_config(name: str, budget_minutes: float, args: argparse.Namespace) -> TrainConfig:
    cfg = dataclasses.replace(TrainConfig(), **TRAIN_DEFAULTS.get(name, {}))
    cfg = apply_overrides(cfg, name, getattr(args, "set", None))
    flags = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    cfg = dataclasses.replace(cfg, **flags, time_budget_minutes=budget_minutes)
    ckpt = getattr(args, "checkpoint_dir", None)
    if getattr(args, "output_dir", None):  # one run, folder named by the user
        cfg = dataclasses.replace(cfg, output_dir=str(args.output_dir))
    elif ckpt:  # many runs: <checkpoint_dir>/<dataset>/<model>
        cfg = dataclasses.replace(cfg, output_dir=str(Path(ckpt) / getattr(args, "_dataset_name", "dataset") / name))
    return cfg


def eval_protocol(name: str, args: argparse.Namespace) -> str:
    """The protocol entry ``name`` evaluates with (``--eval-negatives`` or ``--set eval_negatives=``)."""
    return protocol_name(train_config(name, 0.0, args).eval_negatives)
