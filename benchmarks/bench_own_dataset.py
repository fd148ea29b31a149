"""Time the README's "your own dataset" path from a raw Amazon review dump to recommendations.

Each stage is one of the README's documented commands, run as a subprocess from the repository
root; the table gives its wall time and its CPU time (user + system of the child processes):

    prepare -> stats -> embed text -> quantizer (scripts/run.sh) -> codes (scripts/gen_codes.sh)
    -> finetune (scripts/finetune.sh, cpu recipe, CPU-minute budget) -> evaluate -> recommend

With ``--reviews``/``--meta`` it walks a real dump. Without one (none is available offline),
``--from-prepared DIR`` first writes an Amazon-2018-format dump (``reviews_<ds>.json.gz``: one
``reviewerID, asin, unixReviewTime, overall`` record per interaction, lines shuffled;
``meta_<ds>.json.gz``: ``asin, title, description, brand, category``) from a prepared dataset's
``inter.json`` and ``item.json`` (times invented per user, increasing, so the order survives), and
checks after ``prepare`` that every user's sequence came back unchanged.

    python benchmarks/bench_own_dataset.py --from-prepared ../shared/data/Scientific --dataset SciDump \\
        --work /tmp/own --budget-minutes 8

Rerunning the same command skips the stages already timed (``--fresh`` redoes them); the JSON goes
to ``benchmarks/results/own_dataset-<ds>.json`` after every stage.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from genrec.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

logger = logging.getLogger("bench_own_dataset")
DAY = 86_400


def write_dump(src: Path, name: str, out: Path, seed: int = 0) -> tuple[Path, Path, dict[str, list[str]]]:
    """An Amazon-2018-format review and metadata dump holding ``src``'s interactions and item text.

    Returns the two files and ``{reviewerID: [asin, ...]}``, the sequences ``prepare`` must give back."""
    stem = src.name
    inter = json.loads((src / f"{stem}.inter.json").read_text(encoding="utf-8"))
    items = json.loads((src / f"{stem}.item.json").read_text(encoding="utf-8"))
    asin = {int(i): f"B{int(i):09d}" for i in items}
    rng = random.Random(seed)
    records, expected = [], {}
    for user, seq in inter.items():
        reviewer = f"A{int(user):08d}X"
        t = 1_300_000_000 + rng.randrange(0, 1000) * DAY
        expected[reviewer] = []
        for item in seq:
            t += rng.randrange(1, 60) * DAY  # strictly increasing: the dump's order is the sequence's
            records.append({"reviewerID": reviewer, "asin": asin[int(item)], "unixReviewTime": t, "overall": 5.0})
            expected[reviewer].append(asin[int(item)])
    rng.shuffle(records)  # prepare sorts by time; the line order must not matter
    out.mkdir(parents=True, exist_ok=True)
    reviews, meta = out / f"reviews_{name}.json.gz", out / f"meta_{name}.json.gz"
    with gzip.open(reviews, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    with gzip.open(meta, "wt", encoding="utf-8") as f:
        for i, m in items.items():
            cats = m.get("categories") or []
            f.write(json.dumps({"asin": asin[int(i)], "title": m.get("title", ""),
                                "description": [m["description"]] if m.get("description") else [],
                                "brand": m.get("brand", ""),
                                "category": cats if isinstance(cats, list) else [str(cats)]}) + "\n")
    return reviews, meta, expected


def sequences_by_original_id(data_dir: Path, name: str) -> dict[str, list[str]]:
    """``{original user id: [original item id, ...]}`` of a prepared dataset."""
    def id_map(path: Path) -> dict[str, str]:
        rows = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line)
        return {idx.strip(): orig for orig, idx in rows}
    users, items = id_map(data_dir / f"{name}.user2id"), id_map(data_dir / f"{name}.item2id")
    inter = json.loads((data_dir / f"{name}.inter.json").read_text(encoding="utf-8"))
    return {users[u]: [items[str(i)] for i in seq] for u, seq in inter.items()}


def run_stage(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` from the repository root; its output goes to ``log``. Wall and child CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise SystemExit(f"bench_own_dataset: error: {' '.join(cmd)} exited {proc.returncode}; "
                         f"last lines of {log}:\n" + "\n".join(tail))
    shown = ["python" if c == sys.executable else c for c in cmd]
    return {"command": " ".join(shown), "wall_s": round(wall, 1),
            "user_s": round(after.ru_utime - before.ru_utime, 1), "sys_s": round(after.ru_stime - before.ru_stime, 1)}


def stages(args: argparse.Namespace, reviews: Path, meta: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    data, ds, run = str(args.work / "data"), args.dataset, f"own-{args.dataset}"
    history = args.history or []
    text_only = {"MODALITIES": "text"}
    return [
        ("prepare", [sys.executable, "-m", "genrec.data", "prepare", "--reviews", str(reviews), "--meta", str(meta),
                     "--dataset", ds, "--out", data], {}),
        ("stats", [sys.executable, "-m", "genrec.data", "stats", "--data-root", data, "--dataset", ds], {}),
        ("embed text", [sys.executable, "-m", "index.embed", "text", "--data-root", data, "--dataset", ds,
                        "--no-progress"], {}),
        ("quantizer", ["bash", "scripts/run.sh", ds, data], text_only),
        ("codes", ["bash", "scripts/gen_codes.sh", ds, data], text_only),
        ("finetune", ["bash", "scripts/finetune.sh", "--dataset", ds, "--data-root", data, "--run", run,
                      "--time-budget-minutes", str(args.budget_minutes), "--overwrite"], {}),
        ("evaluate", [sys.executable, "-m", "genrec.evaluate", "--ckpt", f"log/{run}", "--dataset", ds,
                      "--data-root", data, "--task", "seqrec"], {}),
        ("recommend", [sys.executable, "-m", "genrec.recommend", "--ckpt", f"log/{run}", "--dataset", ds,
                       "--data-root", data, "--topk", "10", "--history", *history], {}),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reviews", type=Path, help="an Amazon review dump (2018 .json.gz or 2023 .jsonl[.gz])")
    src.add_argument("--from-prepared", type=Path, help="write a dump from this prepared dataset folder first")
    p.add_argument("--meta", type=Path, help="the metadata dump beside --reviews")
    p.add_argument("--dataset", required=True, help="name of the dataset the walk creates")
    p.add_argument("--work", type=Path, required=True, help="folder for the dump, data/ and the stage logs")
    p.add_argument("--budget-minutes", type=float, default=8.0, help="finetune budget (CPU minutes)")
    p.add_argument("--fresh", action="store_true", help="redo stages already timed")
    p.add_argument("--until", default=None, help="stop after this stage (e.g. prepare)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/own_dataset-<ds>.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.reviews and not args.meta:
        p.error("--reviews needs --meta")
    out = args.out or RESULTS / f"own_dataset-{args.dataset}.json"
    result: dict[str, Any] = {"stages": {}}
    if out.is_file() and not args.fresh:
        result = json.loads(out.read_text(encoding="utf-8"))
    result.update({"dataset": args.dataset, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                   "command": "python benchmarks/bench_own_dataset.py " + " ".join(argv or sys.argv[1:])})
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "logs").mkdir(exist_ok=True)

    expected = None
    if args.from_prepared:
        reviews, meta, expected = write_dump(args.from_prepared, args.dataset, args.work / "dump")
        result["source"] = f"Amazon-2018-format dump written from {args.from_prepared} (times invented, order kept)"
        result["dump"] = {"reviews": reviews.stat().st_size, "meta": meta.stat().st_size,
                          "interactions": sum(map(len, expected.values())), "users": len(expected)}
    else:
        reviews, meta = args.reviews, args.meta
        result["source"] = str(args.reviews)
    if expected:  # the user whose history recommend is shown: the first one, minus its last item
        first = min(expected)
        args.history = expected[first][:-1][-5:]

    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name, cmd, extra in stages(args, reviews, meta):
        if name in result["stages"] and not args.fresh:
            logger.info("%-10s done before (%.0f s), skipped", name, result["stages"][name]["wall_s"])
            continue
        logger.info("%-10s %s", name, " ".join(cmd))
        row = run_stage(cmd, {**env, **extra}, args.work / "logs" / f"{name.replace(' ', '_')}.log")
        if name == "prepare" and expected is not None:
            got = sequences_by_original_id(args.work / "data" / args.dataset, args.dataset)
            kept = sum(got.get(u) == s for u, s in expected.items())
            row["sequences_unchanged"] = f"{kept}/{len(expected)}"
            if kept != len(expected):
                logger.warning("prepare changed %d of %d sequences (5-core filter or a bug)",
                               len(expected) - kept, len(expected))
        if name == "evaluate":
            row["metrics"] = _metrics(args.work / "logs" / "evaluate.log")
        result["stages"][name] = row
        atomic_write_json(out, result, indent=1)
        logger.info("%-10s %.0f s wall, %.0f s CPU", name, row["wall_s"], row["user_s"] + row["sys_s"])
        if name == args.until:
            break

    table = ["| stage | wall | CPU (user + sys) |", "|---|---|---|"]
    for name, row in result["stages"].items():
        table.append(f"| {name} | {row['wall_s'] / 60:.1f} min | {(row['user_s'] + row['sys_s']) / 60:.1f} min |")
    total = sum(r["wall_s"] for r in result["stages"].values())
    table.append(f"| **total** | **{total / 60:.1f} min** | |")
    text = "\n".join(table)
    print(text)
    atomic_write_text(out.with_suffix(".md"), f"# Own-dataset walk: {args.dataset}\n\nProduced by:\n\n    "
                      f"{result['command']}\n\nSource: {result['source']}. Machine: {result['machine']}.\n\n"
                      f"{text}\n")
    return 0


def _metrics(log: Path) -> str:
    """The header and the last result row of the table ``genrec.evaluate`` printed."""
    rows = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    header = next((r for r in rows if "NDCG" in r), "")
    results = [r for r in rows if "NDCG" not in r]
    return f"{header} {results[-1]}" if header and results else ""


if __name__ == "__main__":
    sys.exit(main())
