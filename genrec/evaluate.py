"""Evaluate a trained run: constrained beam search over all test users, HR@K / NDCG@K.

    python -m genrec.evaluate --ckpt log/<run> --dataset Instruments --task seqrec --beams 20
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no -m genrec.evaluate --ckpt log/<run> --dataset Instruments --task seqimage

Writes (atomically, main process only) ``<run>/eval/<dataset>-<task>-<split>.metrics.json`` and
``...predictions.jsonl`` (one line per user: user, target, ranked items, their scores = total
log-probabilities of the beams, and the target's rank, 0 when absent), and prints a table.
``genrec.fusion`` merges the text and image predictions. A ``--max-users`` subset or a
``--checkpoint`` other than best is written under its own name (``...-<split>-500users-seed0``,
``...-<split>-last``); a result file made with other settings (model, beams, topk, users) is not
replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from genrec.data.errors import DataError
from genrec.metrics import DEFAULT_KS, format_table, metrics_from_ranks, ranks_from_lists
from genrec.run_checks import check_trained
from genrec.utils.io import atomic_output, atomic_write_json

logger = logging.getLogger("genrec.evaluate")



def _h(default, text: str):
    return field(default=default, metadata={"help": text})


@dataclass
class EvalConfig:
    ckpt: str = _h("", "run folder log/<run> (config.json, tokenizer/, best/); required")
    dataset: str = _h("Synthetic", "dataset name under the data root")
    task: str = _h("seqrec", "sequence task: seqrec (text), seqimage (image), ...")
    direction: int | None = _h(None, "direction of a two-way fusion task (0 or 1)")
    split: str = _h("test", "test or valid")
    beams: int = _h(20, "beam size")
    topk: int = _h(20, "items kept per user (<= beams unless codes are shared)")
    batch_size: int = _h(0, "users per decoding batch (0: 32 on CPU, 256 on GPU)")
    checkpoint: str = _h("best", "best, last, or a sub-folder of the run")
    data_root: str | None = _h(None, "override the run's data root")
    max_users: int = _h(0, "evaluate a seeded random subset of users (0 = all users)")
    seed: int = _h(0, "seed of the --max-users subset")
    cpu: bool = _h(False, "decode on the CPU even when a GPU is present")
    num_threads: int = _h(0, "torch CPU threads (0 = default)")
    out_dir: str | None = _h(None, "where to write results (default <ckpt>/eval)")
    progress: bool = _h(True, "show a progress bar")
    overwrite: bool = _h(False, "replace a result file produced with other settings")
    ks: tuple[int, ...] = _h(DEFAULT_KS, "HR@K / NDCG@K cut-offs")
    popularity_penalty: float = _h(0.0, "re-rank the decoded items by score - P * log(1 + the item's training "
                                        "interactions); reorders only what the beams return (written as its own result)")


def result_stem(dataset: str, task_name: str, split: str, *, max_users: int = 0, seed: int = 0,
                checkpoint: str = "best", popularity_penalty: float = 0.0) -> str:
    """``<dataset>-<task>-<split>`` for the full evaluation of ``best/`` (what fusion, the report and
    the benchmarks read); a user subset or another checkpoint gets its own name, so a quick check
    never replaces the full result."""
    stem = f"{dataset}-{task_name}-{split}"
    if max_users:
        stem += f"-{max_users}users-seed{seed}"
    if checkpoint != "best":
        stem += "-" + re.sub(r"[^A-Za-z0-9_.]+", "_", checkpoint).strip("_.")
    if popularity_penalty:
        stem += f"-pop{popularity_penalty:g}"
    return stem


# the settings that decide a result's numbers; a file made with others is not replaced silently
SETTING_KEYS = ("model_dir", "beams", "topk", "users", "split")


def check_replaceable(path: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuse to replace ``path`` when it holds a result produced with other settings."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return  # a torn or foreign file holds no result worth keeping
    differ = [k for k in SETTING_KEYS if k in old and old[k] != record[k]]
    if differ:
        shown = ", ".join(f"{k} {old[k]} -> {record[k]}" for k in differ)
        raise ValueError(f"{path} holds a result produced with other settings ({shown}); pass --overwrite to "
                         "replace it or --out-dir to write elsewhere")


def training_counts(ds) -> np.ndarray:
    """Each item's interactions in the training part of the leave-one-out split, as int64 (the
    popularity baseline's counts)."""
    from genrec.data import popularity_counts, training_sequences

    return popularity_counts(training_sequences(ds.sequences), ds.num_items).numpy().astype(np.int64)


# buckets of an item's training interactions, for breakdowns by popularity: 0, 1-4, 5-14, 15-39, 40+
POPULARITY_EDGES = (1, 5, 15, 40)
POPULARITY_NAMES = ("0", "1-4", "5-14", "15-39", "40+")


def popularity_bucket(count: int) -> int:
    """Index into ``POPULARITY_NAMES`` of an item with ``count`` training interactions."""
    return int(np.digitize(count, POPULARITY_EDGES))


def check_eval_config(cfg: "EvalConfig") -> None:
    """Every numeric flag in range (a negative batch size used to decode nothing and score 0)."""
    if cfg.split not in ("test", "valid"):
        raise ValueError(f"--split must be test or valid, not {cfg.split!r}")
    for flag, value, low in (("--beams", cfg.beams, 1), ("--topk", cfg.topk, 1),
                             ("--batch-size", cfg.batch_size, 0), ("--max-users", cfg.max_users, 0),
                             ("--num-threads", cfg.num_threads, 0), ("--seed", cfg.seed, 0)):
        if value < low:
            zero = {"--batch-size": " (0 = auto)", "--max-users": " (0 = all users)", "--num-threads": " (0 = default)"}
            raise ValueError(f"{flag} must be >= {low}{zero.get(flag, '')}, got {value}")
    if not math.isfinite(cfg.popularity_penalty):
        raise ValueError(f"--popularity-penalty must be a finite number, got {cfg.popularity_penalty}")
    if cfg.direction is not None and cfg.direction not in (0, 1):
        raise ValueError(f"--direction must be 0 or 1, got {cfg.direction}")


def write_predictions(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions not found (run python -m genrec.evaluate first)")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"line {lineno}: invalid JSON ({e})") from None
            for key in ("user_index", "target", "items", "scores"):
                if key not in rec:
                    raise DataError(path, f"line {lineno}: missing field {key!r}")
            if len(rec["items"]) != len(rec["scores"]):
                raise DataError(path, f"line {lineno}: {len(rec['items'])} items but {len(rec['scores'])} scores")
            out.append(rec)
    return out


def run_evaluation(cfg: EvalConfig, accelerator=None) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` on one dataset/task/split; returns the metrics record (also written)."""
    from genrec.evaluation import build_sources, evaluate_samples, open_run, task_direction
    from genrec.tasks import get_task

    check_eval_config(cfg)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=cfg.cpu or not torch.cuda.is_available())
    main = accelerator.is_main_process
    task = get_task(cfg.task)
    direction, task_name = task_direction(task, cfg.direction)
    run = open_run(cfg.ckpt)
    ds = run.load_dataset(cfg.dataset, cfg.data_root)
    codes = run.codes(ds)
    d = task.directions[direction]
    check_trained(run.config, run.dir, ds.name, [task.name], (d.source, d.target))
    for modality in (d.source, d.target):
        if modality not in codes:
            raise DataError(ds.dir, f"dataset {ds.name} has no {modality} codes, which task {task.name} needs")
    run.load_model(cfg.checkpoint, device=accelerator.device)
    split = ds.split(run.max_history)
    samples = split.test if cfg.split == "test" else split.valid
    if cfg.max_users and cfg.max_users < len(samples):
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(samples), cfg.max_users, replace=False))
        samples = [samples[i] for i in keep]
    sources = build_sources(run.tokenizer, task, codes, samples, direction)
    targets = [s.target for s in samples]
    batch_size = cfg.batch_size or (256 if accelerator.device.type == "cuda" else 32)

    out_dir = Path(cfg.out_dir) if cfg.out_dir else run.dir / "eval"
    stem = result_stem(ds.name, task_name, cfg.split, max_users=cfg.max_users, seed=cfg.seed, checkpoint=cfg.checkpoint,
                       popularity_penalty=cfg.popularity_penalty)
    # before decoding: a refusal should not cost a full evaluation first
    check_replaceable(out_dir / f"{stem}.metrics.json", {"model_dir": str(run.model_dir), "beams": cfg.beams,
                      "topk": cfg.topk, "users": len(samples), "split": cfg.split}, cfg.overwrite)
    t0 = time.perf_counter()
    metrics, ranked, scores = evaluate_samples(
        run.model, run.tokenizer, codes[d.target], sources, targets, beams=cfg.beams, topk=cfg.topk,
        batch_size=batch_size, ks=cfg.ks, accelerator=accelerator, progress=cfg.progress and main)
    seconds = time.perf_counter() - t0
    if cfg.popularity_penalty:
        from genrec.evaluation import penalise_popularity

        ranked, scores = penalise_popularity(ranked, scores, training_counts(ds), cfg.popularity_penalty)
        metrics = metrics_from_ranks(ranks_from_lists(ranked, targets), cfg.ks)

    target_codes = codes[d.target]
    record = {
        "run": str(run.dir), "model_dir": str(run.model_dir), "dataset": ds.name, "task": task_name,
        "split": cfg.split, "beams": cfg.beams, "topk": cfg.topk, "users": len(samples),
        "all_users": cfg.max_users == 0 or cfg.max_users >= ds.num_users,
        "target_modality": d.target, "code_levels": len(target_codes[0]),
        "dedup_codes": bool(run.config.get("dedup_codes", True)),
        "unique_codes": len(set(target_codes)) == len(target_codes),
        "processes": accelerator.num_processes, "device": str(accelerator.device),
        "popularity_penalty": cfg.popularity_penalty,
        "decode_seconds": round(seconds, 3), "users_per_second": round(len(samples) / max(seconds, 1e-9), 2),
        "metrics": metrics,
    }
    if main:
        ranks = ranks_from_lists(ranked, targets)
        write_predictions(out_dir / f"{stem}.predictions.jsonl", [
            {"user": ds.users[s.user], "user_index": s.user, "target": s.target, "rank": int(r),
             "items": items, "scores": [round(x, 6) for x in sc]}
            for s, items, sc, r in zip(samples, ranked, scores, ranks)])
        atomic_write_json(out_dir / f"{stem}.metrics.json", record, indent=2)
        record["files"] = [str(out_dir / f"{stem}.metrics.json"), str(out_dir / f"{stem}.predictions.jsonl")]
    accelerator.wait_for_everyone()
    return record


def build_parser() -> argparse.ArgumentParser:
    from genrec.utils.cli_args import add_dataclass_flags

    p = argparse.ArgumentParser(prog="python -m genrec.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(p, EvalConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    from genrec.utils.cli_args import given_flags
    from genrec.utils.distributed import end_process_group

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = EvalConfig(**given_flags(args, EvalConfig))
    if not cfg.ckpt:
        parser.error("the following arguments are required: --ckpt")
    try:
        record = run_evaluation(cfg)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"genrec.evaluate: error: {e}", file=sys.stderr)
        return 2
    finally:
        end_process_group()
    if "files" in record:
        name = f"{record['dataset']} {record['task']} ({record['split']}, {record['users']} users)"
        print(format_table({name: record["metrics"]}, ks=DEFAULT_KS))
        print(f"{record['users_per_second']} users/s; wrote {record['files'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
