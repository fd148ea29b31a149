"""The one checkpoint layout of every training loop (generator, baselines, quantizer).

A run folder holds::

    checkpoint-<step>/   model weights (safetensors) and the client's config files,
                         optimizer.safetensors + training_state.json (genrec.utils.train_state),
                         trainer_state.json (the loop's counters, the format tag, the client's meta)
    last -> checkpoint-<step>   a symbolic link, moved atomically after each save
    best/                the selected model (weights, config, trainer_state.json with its metric)

so ``<run>/last/model.safetensors`` always names the newest complete checkpoint. Folders of an
earlier version (``checkpoints/last/`` of the generator, a real ``last/`` folder of the baselines
and the quantizer) are refused with the command that converts them:
``python -m genrec.utils.checkpoints upgrade RUN_DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from genrec.utils.io import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

FORMAT = "genrec-checkpoint/1"
LOOP_FILE = "trainer_state.json"
LAST = "last"
BEST = "best"
_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


class LegacyCheckpointError(ValueError):
    """A run folder written in an earlier layout; the message names the command that converts it."""


def step_dirs(run_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a run, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def legacy_dir(run_dir: Path) -> Path | None:
    """The checkpoint folder of an earlier layout, if the run holds one."""
    old = run_dir / "checkpoints" / LAST
    if (old / LOOP_FILE).is_file():
        return old
    last = run_dir / LAST
    if last.is_dir() and not last.is_symlink():
        return last
    return None


def last_dir(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of ``run_dir`` (None when it has none)."""
    run_dir = Path(run_dir)
    old = legacy_dir(run_dir)
    if old is not None:
        raise LegacyCheckpointError(
            f"{run_dir}: the checkpoint {old} has the layout of an earlier version; convert it with "
            f"`python -m genrec.utils.checkpoints upgrade {run_dir}` (moves it to checkpoint-<step>/, nothing is lost)")
    link = run_dir / LAST
    if link.is_symlink() and not link.exists():
        # stopped while a checkpoint of the same step was being replaced (genrec.utils.io.atomic_dir
        # moves the complete old folder aside first): put that one back
        target = run_dir / os.readlink(link)
        aside = target.with_name(f".{target.name}.old")
        if aside.is_dir() and not target.exists():
            os.replace(aside, target)
    if link.is_symlink() and (link / LOOP_FILE).is_file():
        return link
    return None


def read_loop_state(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / LOOP_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        from genrec.data import DataError

        raise DataError(folder / LOOP_FILE, f"cannot read the checkpoint's loop state: {e}") from None
    return data


def _point_last(run_dir: Path, target: Path) -> None:
    tmp = run_dir / f".{LAST}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, run_dir / LAST)  # renames the link itself: readers see the old or the new target


def save(run_dir: Path, step: int, write: Callable[[Path], None], keep: int = 1) -> Path:
    """Write ``checkpoint-<step>`` through ``write(tmp_folder)``, point ``last`` at it, and keep
    only the ``keep`` newest step folders (``keep`` <= 0 keeps all)."""
    target = run_dir / f"checkpoint-{step}"
    with atomic_dir(target) as tmp:
        write(tmp)
    _point_last(run_dir, target)
    if keep > 0:
        for old in step_dirs(run_dir)[:-keep]:
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def remove_all(run_dir: Path) -> None:
    """Drop every checkpoint of a run (a fresh start into a folder the caller may overwrite)."""
    for p in step_dirs(run_dir):
        shutil.rmtree(p, ignore_errors=True)
    link = run_dir / LAST
    if link.is_symlink():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


# -- converting run folders of earlier versions ---------------------------------------------------
def _upgrade_state(saved: dict[str, Any]) -> dict[str, Any]:
    """The loop counters of an earlier checkpoint in this format's field names."""
    if "state" in saved and "run_config" in saved:  # the baselines' state.json
        old = saved["state"]
        best = old.get("best", -1.0)
        return {"epoch": old["epoch"], "batch_in_epoch": old.get("batch", 0), "step": old["step"],
                "train_seconds": old.get("elapsed", 0.0), "train_cpu_seconds": old.get("cpu_elapsed", 0.0),
                "best_metric": None if best < 0 else best, "best_epoch": old.get("best_epoch", 0.0),
                "best_step": old.get("best_step"), "bad_evals": old.get("bad_evals", 0),
                "last_eval_step": old.get("last_eval_step", -1), "history": old.get("history", []),
                "stop_reason": "early_stopping" if old.get("early_stopped") else None,
                "finished": bool(old.get("early_stopped")),
                "world_size": saved.get("world_size", 1), "train_config": saved.get("train_config"),
                "run_config": saved.get("run_config")}
    if "best_value" in saved:  # the quantizer's counters (checkpoints at epoch ends only)
        return {"epoch": saved["epoch"], "batch_in_epoch": 0, "step": saved["step"],
                "best_metric": saved["best_value"] if saved["best_value"] != float("inf") else None,
                "best_epoch": saved.get("best_epoch", 0), "last_eval_step": saved["step"], "world_size": 1}
    return dict(saved)  # the generator's TrainState: the same field names


def upgrade(run_dir: str | os.PathLike) -> Path:
    """Move an earlier layout's checkpoint to ``checkpoint-<step>`` and point ``last`` at it."""
    run_dir = Path(run_dir)
    old = legacy_dir(run_dir)
    if old is None:
        raise ValueError(f"{run_dir}: no checkpoint of an earlier layout to upgrade")
    state_file = old / (LOOP_FILE if (old / LOOP_FILE).is_file() else "state.json")
    if not state_file.is_file():
        raise ValueError(f"{old}: neither {LOOP_FILE} nor state.json; not a checkpoint of this project")
    saved = json.loads(state_file.read_text(encoding="utf-8"))
    state = {**_upgrade_state(saved), "format": FORMAT}
    target = run_dir / f"checkpoint-{int(state['step'])}"
    if target.exists():
        raise ValueError(f"{target} already exists; move it away first")
    staging = run_dir / f".{target.name}.upgrade"
    shutil.copytree(old, staging, symlinks=True)
    (staging / "state.json").unlink(missing_ok=True)
    atomic_write_json(staging / LOOP_FILE, state, indent=2)
    os.replace(staging, target)
    if old.name == LAST and old.parent == run_dir:
        shutil.rmtree(old)
    else:
        shutil.rmtree(old.parent)
    _point_last(run_dir, target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genrec.utils.checkpoints",
                                description="Convert run folders of earlier versions to the checkpoint-<step> layout.")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upgrade", help="move an earlier layout's checkpoint to checkpoint-<step>/ and link last")
    up.add_argument("run_dirs", nargs="+")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    status = 0
    for run in args.run_dirs:
        try:
            logger.info("%s -> %s", run, upgrade(run))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
