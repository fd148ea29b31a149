"""``python -m genrec.report``: one table of a run's evaluations next to a popularity ranking.

Reads ``<run>/eval/<ds>-{seqrec,seqimage,fused}-<split>.metrics.json`` (written by
``genrec.evaluate`` and ``genrec.fusion``) and scores popularity (training-part counts, full
ranking, pessimistic ties) on the same users, so the two are directly comparable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from genrec.data import DataError, load_dataset, popularity_counts, training_sequences
from genrec.metrics import DEFAULT_KS, format_table, metrics_from_ranks, ranks_from_scores
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags



def popularity_metrics(data_root: str | Path, dataset: str, split: str = "test", max_history: int = 20) -> dict[str, float]:
    ds = load_dataset(data_root, dataset)
    parts = ds.split(max_history)
    scores = popularity_counts(training_sequences(ds.sequences), ds.num_items)
    samples = parts.test if split == "test" else parts.valid
    targets = torch.tensor([s.target for s in samples])
    ranks = ranks_from_scores(scores.expand(len(samples), -1), targets)
    return metrics_from_ranks(ranks, DEFAULT_KS)


def run_table(run: str | Path, dataset: str, data_root: str | Path, split: str = "test") -> tuple[str, dict]:
    rows: dict[str, dict[str, float]] = {"popularity": popularity_metrics(data_root, dataset, split)}
    for task, label in (("seqrec", "genrec text (seqrec)"), ("seqimage", "genrec image (seqimage)"),
                        ("fused", "genrec fused")):
        path = Path(run) / "eval" / f"{dataset}-{task}-{split}.metrics.json"
        if path.is_file():
            record = json.loads(path.read_text())
            rows[label] = record["metrics"] if "metrics" in record else record
    return format_table(rows), rows


@dataclass
class ReportArgs:
    """The flags of ``python -m genrec.report``."""

    ckpt: str = flag("", "run folder log/<run>", required=True)
    dataset: str = flag("", "dataset name", required=True)
    data_root: str = flag("data", "folder holding <dataset>/")
    split: str = flag("test", "evaluated split", choices=("test", "valid"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genrec.report", description=__doc__)
    add_dataclass_flags(p, ReportArgs)
    args = ReportArgs(**given_flags(p.parse_args(argv), ReportArgs))
    logging.basicConfig(level=logging.WARNING)
    try:
        table, _ = run_table(args.ckpt, args.dataset, args.data_root, args.split)
    except (DataError, ValueError, KeyError) as e:
        print(f"genrec.report: error: {e}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
