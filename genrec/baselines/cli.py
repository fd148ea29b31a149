"""``python -m genrec.baselines``: train/evaluate one baseline on one dataset, or list the models.

Examples::

    python -m genrec.baselines list
    python -m genrec.baselines train --model sasrec --dataset Synthetic --output-dir runs/sasrec-syn
    python -m genrec.baselines train --model sasrec-bce --dataset Instruments --budget-minutes 10 \\
        --set dropout=0.5 --output-dir runs/sasrec-bce-inst      # rerun the same line to resume

Several processes (CPU or GPU)::

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no -m genrec.baselines train --cpu ...    # or: torchrun --standalone ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from genrec.data import DataError, RecDataset, load_dataset
from genrec.utils.cli_args import add_dataclass_flags, flag

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def resolve_data_root(root: str | Path, name: str) -> Path:
    """``root`` if it holds ``<name>/``, else the shared read-only copy (``../shared/data``) if that does."""
    root = Path(root)
    if (root / name).is_dir():
        return root
    if (SHARED_DATA / name).is_dir():
        return SHARED_DATA
    raise DataError(root / name, f"dataset folder not found (also looked in {SHARED_DATA})")


def open_dataset(root: str | Path, name: str) -> RecDataset:
    return load_dataset(resolve_data_root(root, name), name)


@dataclass
class ModelFlags:
    """Run-wide flags beside the training config's (None = the model's default)."""

    num_threads: int | None = flag(None, "torch CPU threads; 1 is much faster when other jobs share the cores")
    residual: str | None = flag(None, "residual of the SASRec/TiSASRec blocks: plain, or mHC residual streams",
                                choices=("plain", "mhc"))
    streams: int | None = flag(None, "mHC: number of residual streams (4 when unset)")
    sinkhorn_iters: int | None = flag(None, "mHC: Sinkhorn-Knopp iterations (20 when unset)")


@dataclass
class TrainRunArgs:
    """The flags of ``python -m genrec.baselines train`` besides the training ones."""

    model: str = flag("", "registered model (see `list`)", required=True)
    dataset: str = flag("", "dataset name", required=True)
    data_root: str = flag("data", "falls back to ../shared/data when <root>/<ds> is missing")
    time_budget_minutes: float = flag(0.0, "training budget (0 = none)")
    output_dir: str = flag("", "checkpoints and result.json; rerunning resumes")


@dataclass
class EmbeddingsArgs:
    """The flags of ``python -m genrec.baselines embeddings``."""

    run: str = flag("", "baseline run folder (the --output-dir of train)", required=True)
    dataset: str = flag("", "dataset the run was trained on", required=True)
    data_root: str = flag("data", "folder holding <dataset>/ (written to, so not the shared read-only copy)")
    name: str = flag("sasrec", "the file is <ds>.emb-<name>.npy")


def _with_defaults(p: argparse.ArgumentParser, cls: type) -> None:
    """Every field of ``cls`` present in the namespace (the registry reads them as attributes)."""
    p.set_defaults(**{f.name: f.default for f in dataclasses.fields(cls)})


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and the results benchmark (None = the model's default)."""
    g = p.add_argument_group("training (defaults per model, see genrec.baselines.registry)")
    from genrec.baselines.settings import TRAIN_FLAGS
    from genrec.baselines.trainer import TrainConfig

    # defaults shown are TrainConfig's; a model's preset (genrec/configs/baselines/presets.toml) may differ
    add_dataclass_flags(g, TrainConfig, only=TRAIN_FLAGS)
    add_dataclass_flags(g, ModelFlags)
    _with_defaults(p, ModelFlags)
    g.add_argument("--set", action="append", default=[], metavar="[MODEL.]FIELD=VALUE",
                   help="override a model or training config field, e.g. dropout=0.5 or sasrec-bce.lr=0.002")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genrec.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered models")
    t = sub.add_parser("train", help="train and evaluate one model on one dataset")
    add_dataclass_flags(t, TrainRunArgs)
    _with_defaults(t, TrainRunArgs)
    add_train_flags(t)
    e = sub.add_parser("embeddings", help="write a trained run's item table as <ds>.emb-<name>.npy (row i = item i)")
    add_dataclass_flags(e, EmbeddingsArgs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from genrec.baselines.registry import MODEL_DEFAULTS, MODELS, check_overrides
    from genrec.utils.distributed import end_process_group

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "list":
        for name in MODELS:
            print(name, "" if name not in MODEL_DEFAULTS else MODEL_DEFAULTS[name])
        return 0
    if args.command == "embeddings":
        from genrec.baselines.embeddings import write_item_embeddings
        from genrec.utils.cli_args import given_flags

        ea = EmbeddingsArgs(**given_flags(args, EmbeddingsArgs))
        try:
            print(write_item_embeddings(ea.run, load_dataset(ea.data_root, ea.dataset), ea.name))
        except (DataError, ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    try:
        if args.model not in MODELS:
            raise ValueError(f"unknown model {args.model!r}; choose from {sorted(MODELS)}")
        check_overrides(args.set, [args.model])
        dataset = open_dataset(args.data_root, args.dataset)
        result = _train_one(args, dataset, MODELS)
        from accelerate import PartialState

        if PartialState().is_main_process:
            print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        end_process_group()
    return 0


def _train_one(args: argparse.Namespace, dataset: RecDataset, models: dict) -> dict:
    from accelerate import PartialState

    from genrec.utils.io import atomic_write_json

    result = models[args.model](dataset, args.time_budget_minutes, args)
    if args.output_dir and PartialState().is_main_process:
        atomic_write_json(Path(args.output_dir) / "result.json", result, indent=1)
    return result
