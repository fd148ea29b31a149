"""At which code level does the generator lose a user's target? Prefix hits by target popularity.

For every test user of a generator run's saved predictions (``genrec.evaluate``'s
``<ds>-seqrec-test.predictions.jsonl``), the share whose top-K items hold one that shares the
target's first L code tokens, for each L, per bucket of the target's count among the training
interactions; plus the mean number of code siblings (other items under the target's prefix of all
but the last level). A low share at level 1 or 2 means the search never reaches the target's
region of the code tree; a high share up to the last level with a miss means siblings win.

    python benchmarks/code_level_hits.py --run log/convergence-wsd-noval-s3/Scientific/genrec+constrained+pooled+grouped+wsd \\
        --dataset Scientific --data-root ../shared/data --out benchmarks/results/code_level_hits_Scientific
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.data import DataError  # noqa: E402
from genrec.utils.io import atomic_write_json, atomic_write_text, output_stem, stem_file  # noqa: E402

logger = logging.getLogger("code_level_hits")


def level_hits(predictions: list[dict], codes: list[tuple[str, ...]], counts: np.ndarray, k: int) -> list[dict]:
    """One row per popularity bucket: users, prefix-hit share per level, hit share, mean siblings."""
    from genrec.evaluate import POPULARITY_NAMES, popularity_bucket

    levels = len(codes[0])
    parent = Counter(c[:-1] for c in codes)
    rows: dict[int, dict] = {}
    for p in predictions:
        t = int(p["target"])
        b = popularity_bucket(counts[t])
        row = rows.setdefault(b, {"target_train_count": POPULARITY_NAMES[b], "users": 0, "siblings": 0.0,
                                  **{f"L{lv}": 0.0 for lv in range(1, levels + 1)}})
        row["users"] += 1
        top = [codes[int(i)] for i in p["items"][:k]]
        for lv in range(1, levels + 1):
            row[f"L{lv}"] += any(c[:lv] == codes[t][:lv] for c in top)
        row["siblings"] += parent[codes[t][:-1]] - 1
    out = []
    for b in sorted(rows):
        row = rows[b]
        n = row["users"]
        out.append({**row, "siblings": row["siblings"] / n, **{f"L{lv}": row[f"L{lv}"] / n for lv in range(1, levels + 1)}})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="generator run folder with eval/<ds>-seqrec-test.predictions.jsonl")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None, help="override the run's data root")
    p.add_argument("--k", type=int, default=10, help="top-K items read per user")
    p.add_argument("--out", required=True, help="output stem: writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from genrec.evaluate import read_predictions, training_counts
    from genrec.evaluation import open_run

    try:
        if args.k < 1:
            raise ValueError(f"--k must be >= 1, got {args.k}")
        run = open_run(args.run)
        ds = run.load_dataset(args.dataset, args.data_root)
        codes = run.codes(ds).get("text")
        if not codes:
            raise DataError(ds.dir, f"dataset {ds.name} has no text codes")
        preds_path = run.dir / "eval" / f"{ds.name}-seqrec-test.predictions.jsonl"
        if not preds_path.is_file():
            raise DataError(preds_path, "no test predictions: run `python -m genrec.evaluate --ckpt RUN` first")
        rows = level_hits(read_predictions(preds_path), codes, training_counts(ds), args.k)
    except (DataError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    command = "python benchmarks/code_level_hits.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = output_stem(args.out)
    atomic_write_json(stem_file(out, ".json"), {"dataset": args.dataset, "run": args.run, "k": args.k,
                                                 "command": command, "rows": rows}, indent=1)
    levels = [key for key in rows[0] if key.startswith("L")] if rows else []
    table = [f"# Code-level hits in the top {args.k}, {args.dataset}", "", f"`{command}`", "",
             "Share of test users whose top-K holds an item sharing the target's first L code tokens (L = levels; "
             "the last level is a hit), by the target's count among the training interactions.", "",
             "| target's training count | users | " + " | ".join(levels) + " | code siblings |",
             "|---|---|" + "---|" * (len(levels) + 1),
             *(f"| {r['target_train_count']} | {r['users']} | " + " | ".join(f"{r[lv]:.3f}" for lv in levels)
               + f" | {r['siblings']:.2f} |" for r in rows), ""]
    atomic_write_text(stem_file(out, ".md"), "\n".join(table))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
