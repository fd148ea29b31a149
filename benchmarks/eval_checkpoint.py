"""Test metrics of a convergence run's current best checkpoint, while the run is stopped mid-way.

A budget point of ``benchmarks/convergence.py`` exists only once its run reaches the budget; this
scores what a stopped run has so far (its validation-selected ``best/``), labelled with the CPU
seconds trained, so a long run can be followed without waiting for its end.

    python benchmarks/eval_checkpoint.py --dataset Instruments --model genrec+constrained+pooled+anneal \\
        --runs log/convergence-3h --data-root ../shared/data --out benchmarks/results/convergence_3h_interim.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from genrec.utils.io import atomic_write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, help="the convergence rung the run trains")
    p.add_argument("--runs", default="log/convergence")
    p.add_argument("--data-root", default="data")
    p.add_argument("--text-codes", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="genrec.FIELD=VALUE",
                   help="the same entry overrides the convergence run was given")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    import convergence
    from benchmarks.genrec_entry import evaluate_genrec_run
    from genrec.data import load_dataset

    torch.set_num_threads(args.threads)
    run_dir = Path(args.runs) / args.dataset / args.model
    ds = load_dataset(args.data_root, args.dataset, text_codes=args.text_codes)
    ns = argparse.Namespace(set=args.set, codebook_runs={}, pretrained_runs={}, teacher_runs={})
    cfg = convergence.variant_config(ds, args.model, ns, {args.dataset: args.text_codes} if args.text_codes else {})
    best = json.loads((run_dir / "best" / "trainer_state.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    trained = max((r.get("train_cpu_seconds", 0.0) for r in rows if r.get("type") == "train"), default=0.0)
    t0 = time.process_time()
    ev = evaluate_genrec_run(run_dir, ds, cfg, args.threads)
    out = {"dataset": args.dataset, "model": args.model, "run": str(run_dir),
           "trained_cpu_seconds": round(trained, 1), "best_step": best.get("step"),
           "valid_NDCG@10": best.get("value"), "test_NDCG@10": ev["metrics"]["NDCG@10"],
           "test_HR@10": ev["metrics"]["HR@10"], "reported": ev["reported"],
           "by_modality": ev["by_modality"], "eval_cpu_seconds": round(time.process_time() - t0, 1),
           "command": "python benchmarks/eval_checkpoint.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    atomic_write_json(args.out, out, indent=1)
    print(f"{args.dataset} / {args.model} after {trained / 60:.1f} CPU-min (best step {out['best_step']}): "
          f"test NDCG@10 {out['test_NDCG@10']:.4f} ({out['reported']}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
