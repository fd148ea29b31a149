"""Is model A's test NDCG@10 different from model B's, per user? A paired test over the test users.

Pairs ``--a`` runs with ``--b`` runs in order (say the same seed of each model), scores every test
user's NDCG@10 under each (full ranking; generator runs through ``genrec.evaluate`` on their
``--checkpoint``, baseline runs on their best model), and reports per pair and for the seed-averaged
scores (each user's NDCG@10 averaged over a side's runs) the mean difference and ratio with
bootstrap intervals over users, and the paired t-test and Wilcoxon p-values
(``genrec.significance``). ``--breakdown`` adds both sides' mean NDCG@10 per bucket of the test
target's training popularity (where one model wins and the other loses). Writes ``<out>.json`` and
``<out>.md``.

    python benchmarks/paired_test.py --dataset Scientific --data-root ../shared/data \\
        --a log/convergence-wsd-noval-s3/Scientific/genrec+constrained+pooled+grouped+wsd ... \\
        --b log/convergence-sasrec-seed3/Scientific/sasrec ... --out benchmarks/results/paired_Scientific
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.data import DataError  # noqa: E402
from genrec.utils.io import atomic_write_json, atomic_write_text, output_stem, stem_file  # noqa: E402

logger = logging.getLogger("paired_test")


def is_baseline_run(run: Path) -> bool:
    state = run / "best" / "trainer_state.json"
    return state.is_file() and "model" in json.loads(state.read_text(encoding="utf-8")).get("run_config", {})


def user_scores(run: Path, dataset: str, data_root: str | None, checkpoint: str, threads: int, k: int = 10
                ) -> tuple[dict[int, float], dict[int, int], float]:
    """``({user: NDCG@k}, {user: target}, the run's own NDCG@k)`` on the full test split."""
    from genrec.significance import ndcg_at_k

    if is_baseline_run(run):
        from genrec.baselines.cli import open_dataset
        from genrec.baselines.predict import test_ranks

        by_user = test_ranks(run, open_dataset(data_root or "data", dataset))
        users = list(by_user)
        targets = {u: by_user[u][0] for u in users}
        ranks = [by_user[u][1] for u in users]
        own = None
    else:
        from genrec.evaluate import EvalConfig, read_predictions, run_evaluation

        cfg = EvalConfig(ckpt=str(run), dataset=dataset, task="seqrec", checkpoint=checkpoint, data_root=data_root,
                         num_threads=threads, progress=False, overwrite=True)
        record = run_evaluation(cfg)
        rows = read_predictions(record["files"][1])
        users = [int(r["user_index"]) for r in rows]
        targets = {int(r["user_index"]): int(r["target"]) for r in rows}
        ranks = [int(r["rank"]) for r in rows]
        own = float(record["metrics"][f"NDCG@{k}"])
    if len(set(users)) != len(users):
        raise DataError(run, "a user appears twice among the test predictions")
    gains = ndcg_at_k(ranks, k)
    if own is not None and abs(own - float(gains.mean())) > 1e-9:
        raise DataError(run, f"per-user NDCG@{k} averages {gains.mean():.6f}, the run's evaluation {own:.6f}")
    return dict(zip(users, gains.tolist())), targets, float(gains.mean())


def compare(a: dict[int, float], b: dict[int, float], seed: int) -> dict:
    from genrec.significance import align_users, paired_comparison

    _, va, vb = align_users(a, b, "A", "B")
    return paired_comparison(va, vb, seed=seed)


def popularity_breakdown(a: dict[int, float], b: dict[int, float], targets: dict[int, int], dataset: str,
                         data_root: str | None) -> list[dict]:
    """Mean NDCG@10 of each side per bucket of the target's count among the training interactions."""
    from genrec.baselines.cli import open_dataset
    from genrec.evaluate import POPULARITY_NAMES, popularity_bucket, training_counts

    counts = training_counts(open_dataset(data_root or "data", dataset))
    bucket = {u: popularity_bucket(counts[t]) for u, t in targets.items()}
    out = []
    for i, name in enumerate(POPULARITY_NAMES):
        users = [u for u in targets if bucket[u] == i]
        if users:
            out.append({"target_train_count": name, "users": len(users), "mean_a": float(np.mean([a[u] for u in users])),
                        "mean_b": float(np.mean([b[u] for u in users]))})
    return out


def fmt(row: dict) -> str:
    ratio = f"{row['ratio']:.3f} [{row['ratio_low']:.3f}, {row['ratio_high']:.3f}]" if "ratio" in row else "-"
    return (f"| {row['name']} | {row['mean_a']:.4f} | {row['mean_b']:.4f} | {row['diff']:+.4f} "
            f"[{row['diff_low']:+.4f}, {row['diff_high']:+.4f}] | {ratio} | {row['t_pvalue']:.3f} | "
            f"{row['wilcoxon_pvalue']:.3f} | {row['users_a_better']} / {row['users_b_better']} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--a", nargs="+", required=True, help="runs of model A (generator or baseline run folders)")
    p.add_argument("--b", nargs="+", required=True, help="runs of model B, paired with --a in order")
    p.add_argument("--data-root", default=None, help="folder holding <dataset>/ (default: each run's own)")
    p.add_argument("--checkpoint", default="best", help="generator checkpoint to score: best or last")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--breakdown", action="store_true", help="also both sides' NDCG@10 per target-popularity bucket")
    p.add_argument("--out", required=True, help="output stem: writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(args.a) != len(args.b):
        logger.error("--a has %d runs and --b %d: pair them one to one", len(args.a), len(args.b))
        return 2
    import torch

    torch.set_num_threads(args.threads)
    try:
        sides = {"A": [], "B": []}
        for name, runs in (("A", args.a), ("B", args.b)):
            for run in map(Path, runs):
                if not run.is_dir():
                    raise DataError(run, "run folder not found")
                scores, targets, mean = user_scores(run, args.dataset, args.data_root, args.checkpoint, args.threads)
                logger.info("%s: %s NDCG@10 %.4f over %d users", name, run, mean, len(scores))
                sides[name].append((run, scores, targets))
        ref_targets = sides["A"][0][2]
        for run, _, targets in sides["A"][1:] + sides["B"]:
            if targets != ref_targets:
                raise DataError(run, f"its test users or targets differ from {sides['A'][0][0]}'s: not the same split")
        rows = []
        for (ra, sa, _), (rb, sb, _) in zip(sides["A"], sides["B"]):
            rows.append({"name": f"{ra} vs {rb}", "a": str(ra), "b": str(rb), **compare(sa, sb, args.seed)})
        users = list(ref_targets)
        mean_a = {u: float(np.mean([s[u] for _, s, _ in sides["A"]])) for u in users}
        mean_b = {u: float(np.mean([s[u] for _, s, _ in sides["B"]])) for u in users}
        if len(args.a) > 1:
            rows.append({"name": f"seed-averaged per user ({len(args.a)} runs a side)", "a": args.a, "b": args.b,
                         **compare(mean_a, mean_b, args.seed)})
        buckets = (popularity_breakdown(mean_a, mean_b, ref_targets, args.dataset, args.data_root)
                   if args.breakdown else [])
    except (DataError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    command = "python benchmarks/paired_test.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = output_stem(args.out)
    atomic_write_json(stem_file(out, ".json"), {"dataset": args.dataset, "command": command, "metric": "NDCG@10",
                                                 "rows": rows, "popularity_breakdown": buckets}, indent=1)
    table = [f"# Paired test, {args.dataset}, test NDCG@10 per user (A against B)", "", f"`{command}`", "",
             "Intervals: 95% percentile bootstrap over users (10,000 resamples).", "",
             "| pair | A | B | A - B [95% CI] | A / B [95% CI] | paired t p | Wilcoxon p | users A / B better |",
             "|---|---|---|---|---|---|---|---|", *map(fmt, rows), ""]
    if buckets:
        table += ["By the test target's count among the training interactions (each side's runs averaged per user):",
                  "", "| target's training count | users | A | B | A / B |", "|---|---|---|---|---|",
                  *(f"| {r['target_train_count']} | {r['users']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | "
                    + (f"{r['mean_a'] / r['mean_b']:.2f}" if r["mean_b"] > 0 else "-") + " |" for r in buckets), ""]
    atomic_write_text(stem_file(out, ".md"), "\n".join(table))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
