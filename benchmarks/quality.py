"""Quality of one finetuned generator next to the published numbers: text, image and fused test metrics.

    scripts/finetune.sh --dataset Instruments --run ft-paper-instruments-cpu90 --epochs 1 \\
        --batch-size 256 --micro-batch-size 256 --lr 1e-3 --warmup-ratio 0.02 --time-budget-minutes 90
    scripts/evaluate.sh log/ft-paper-instruments-cpu90 Instruments --beams 20
    python benchmarks/quality.py --ckpt log/ft-paper-instruments-cpu90 --dataset Instruments

Reads the run's evaluation files (``<run>/eval/<ds>-{seqrec,seqimage,fused}-test.metrics.json``,
written by ``genrec.evaluate`` and ``genrec.fusion``), its training record (``config.json``,
``metrics.jsonl``: preset, tasks, steps, epochs, training seconds, last training loss, validation
results) and scores popularity on the same test users. Prints one Markdown table with the published
rows of ``benchmarks/results.py`` below ours and writes ``benchmarks/results/quality-<ds>.{json,md}``
(atomically). Nothing is re-run: the table is exactly what the run's files say.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.data import DataError  # noqa: E402
from genrec.metrics import format_table  # noqa: E402
from genrec.report import run_table  # noqa: E402
from genrec.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

COLS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")


def training_record(run: Path) -> dict[str, Any]:
    """What the run trained: its config and the facts its metrics log holds about the run's end."""
    cfg = json.loads((run / "config.json").read_text())
    cfg = cfg.get("train", cfg)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    end = next((r for r in reversed(records) if r.get("type") == "end"), {})
    return {
        "preset": cfg.get("preset"), "tasks": cfg.get("tasks"), "batch_size": cfg.get("batch_size"),
        "lr": cfg.get("lr"), "scheduler": cfg.get("scheduler"), "init": cfg.get("init"),
        "steps": train[-1]["step"] if train else 0, "epochs": train[-1]["epoch"] if train else 0,
        "train_seconds": end.get("train_seconds", train[-1]["train_seconds"] if train else None),
        "stop_reason": end.get("stop_reason"),
        "first_loss": train[0]["loss"] if train else None, "last_loss": train[-1]["loss"] if train else None,
        "last_eval": evals[-1] if evals else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="run folder log/<run>, evaluated with scripts/evaluate.sh")
    p.add_argument("--dataset", default="Instruments")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--note", default="", help="a sentence on the budget and machine, kept with the table")
    args = p.parse_args(argv)
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # benchmarks/results.py, beside this file, holds the published numbers
        sys.path.insert(0, here)
    from results import published_for

    run = Path(args.ckpt)
    try:
        _, rows = run_table(run, args.dataset, args.data_root)
        record = training_record(run)
    except (DataError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"quality: error: {e}", file=sys.stderr)
        return 2
    if len(rows) == 1:
        print(f"quality: error: {run}/eval holds no {args.dataset} test metrics; run scripts/evaluate.sh first",
              file=sys.stderr)
        return 2
    table_rows = {k: {c: v[c] for c in COLS if c in v} for k, v in rows.items()}
    for name, metrics in published_for(args.dataset):
        table_rows[f"*published: {name}*"] = metrics
    table = format_table(table_rows)
    hours = (record["train_seconds"] or 0) / 3600
    summary = (f"{record['preset']} preset, tasks {','.join(record['tasks'] or [])}, {record['steps']} steps "
               f"({record['epochs']:.2f} epochs) of batch {record['batch_size']} in {hours:.2f} h of training; "
               f"training loss {record['first_loss']:.3f} -> {record['last_loss']:.3f}; stop: {record['stop_reason']}")
    text = "\n".join([f"# {args.dataset}: finetuned generator, test split (full ranking, all users)", "",
                      f"Run `{run}`: {summary}." + (f" {args.note}" if args.note else ""), "", table, ""])
    print(text)
    out = Path(args.out)
    atomic_write_text(out / f"quality-{args.dataset}.md", text)
    atomic_write_json(out / f"quality-{args.dataset}.json",
                      {"run": str(run), "dataset": args.dataset, "training": record, "rows": rows,
                       "published": dict(published_for(args.dataset)), "note": args.note,
                       "date": dt.datetime.now().isoformat(timespec="seconds")}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
