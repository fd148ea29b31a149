"""Named training recipes: checked-in TOML files (``genrec/configs/<name>.toml``) or any TOML path.

A recipe has a ``[common]`` table and one per mode (``[pretrain]``, ``[finetune]``); keys are
:class:`genrec.training.TrainConfig` fields. Precedence: mode defaults < recipe < command-line flags.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml":
        if not p.is_file():
            raise FileNotFoundError(f"--recipe {p}: no such file")
        return p
    p = CONFIG_DIR / f"{name}.toml"
    if not p.is_file():
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(available())} or give a .toml file")
    return p


def load_recipe(name: str, mode: str) -> dict[str, Any]:
    """TrainConfig overrides of recipe ``name`` for ``mode``; unknown keys are an error naming the file."""
    from genrec.training import TrainConfig

    path = recipe_path(name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML ({e})") from None
    unknown_tables = sorted(set(data) - {"common", "pretrain", "finetune"})
    if unknown_tables:
        raise ValueError(f"{path}: unknown tables {unknown_tables} (expected common, pretrain, finetune)")
    out = {**data.get("common", {}), **data.get(mode, {})}
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"mode"}
    bad = sorted(set(out) - known)
    if bad:
        raise ValueError(f"{path}: unknown settings {bad}")
    return out
