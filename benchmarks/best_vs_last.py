"""Test NDCG@10 of the validation-selected ``best/`` checkpoint against the run's final ``last/`` one.

Model selection on a validation sample is itself noisy: on Scientific, validation NDCG@10 over the
1,000 selection users moves by +-.004 between neighbouring epochs, about as much as the late
checkpoints differ. Under a schedule that decays to zero at the end of its budget, the final model
is the one the schedule was laid out for; this scores both, per run, on the full test split.

    python benchmarks/best_vs_last.py --dataset Scientific --data-root ../shared/data \\
        --runs log/convergence-wsd/Scientific/genrec+constrained+pooled+grouped+wsd ... \\
        --out benchmarks/results/best_vs_last_Scientific
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

logger = logging.getLogger("best_vs_last")


def score(run: Path, dataset: str, checkpoint: str, data_root: str | None, threads: int) -> float:
    """Full-test NDCG@10 of one checkpoint (text codes, seqrec), written beside the run's other results."""
    from genrec.evaluate import EvalConfig, run_evaluation

    cfg = EvalConfig(ckpt=str(run), dataset=dataset, task="seqrec", checkpoint=checkpoint, data_root=data_root,
                     num_threads=threads, progress=False)
    return float(run_evaluation(cfg)["metrics"]["NDCG@10"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--runs", nargs="+", required=True, help="run folders (each with best/ and last/)")
    p.add_argument("--data-root", default=None, help="override the runs' data root")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output stem: writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = []
    for run in map(Path, args.runs):
        for sub in ("best", "last"):
            if not (run / sub / "model.safetensors").is_file():
                logger.error("%s has no %s/ checkpoint", run, sub)
                return 2
        state = json.loads((run / "best" / "trainer_state.json").read_text(encoding="utf-8"))
        last = json.loads((run / "last" / "trainer_state.json").read_text(encoding="utf-8"))
        rows.append({"run": str(run), "best_step": state.get("step"), "last_step": last.get("step"),
                     "best_test_NDCG@10": score(run, args.dataset, "best", args.data_root, args.threads),
                     "last_test_NDCG@10": score(run, args.dataset, "last", args.data_root, args.threads)})
        logger.info("%s: best %.4f, last %.4f", run, rows[-1]["best_test_NDCG@10"], rows[-1]["last_test_NDCG@10"])
    n = len(rows)
    mean_best = sum(r["best_test_NDCG@10"] for r in rows) / n
    mean_last = sum(r["last_test_NDCG@10"] for r in rows) / n
    command = "python benchmarks/best_vs_last.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    atomic_write_json(args.out + ".json", {"dataset": args.dataset, "runs": rows, "mean_best": mean_best,
                                           "mean_last": mean_last, "command": command}, indent=1)
    lines = [f"# best/ vs last/ on {args.dataset} (test NDCG@10, full ranking)", "", f"`{command}`", "",
             "| run | best step | last step | best/ | last/ |", "|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['best_step']} | {r['last_step']} | {r['best_test_NDCG@10']:.4f} | "
              f"{r['last_test_NDCG@10']:.4f} |" for r in rows]
    lines += [f"| mean of {n} | | | {mean_best:.4f} | {mean_last:.4f} |", ""]
    table = "\n".join(lines)
    atomic_write_text(args.out + ".md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
