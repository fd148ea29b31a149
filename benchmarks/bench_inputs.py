"""Training cost per epoch of the generator's input modes: code tokens vs pooled items (and all-prefix).

Same dataset, tasks, preset, batch and thread count for every mode; each mode trains ``--steps``
optimizer steps after ``--warmup`` untimed ones, timed by this process's CPU clock, and the epoch
cost is (CPU-seconds per step) x (steps per epoch). All-prefix training can only run the
single-modality sequence tasks, so it is compared against tokens and pooled on those tasks too.

    python benchmarks/bench_inputs.py --dataset Instruments --data-root ../shared/data [--compare-dropout]

Writes ``benchmarks/results/inputs_cost-<dataset>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.utils.io import atomic_write_json  # noqa: E402

ALL_TASKS = ["seqrec", "seqimage", "item2image", "image2item", "fusionseqrec"]


def measure(args: argparse.Namespace, tasks: list[str], item_inputs: str, prefix: bool, work: Path,
            dropout: str = "mask") -> dict:
    import genrec.model

    default, genrec.model.MASK_DROPOUT = genrec.model.MASK_DROPOUT, dropout == "mask"
    try:
        return _measure(args, tasks, item_inputs, prefix, work, dropout)
    finally:
        genrec.model.MASK_DROPOUT = default


def _measure(args: argparse.Namespace, tasks: list[str], item_inputs: str, prefix: bool, work: Path,
             dropout: str) -> dict:
    import numpy as np

    from genrec.training import Trainer, default_config

    cfg = default_config("finetune", datasets=[args.dataset], data_root=args.data_root, tasks=tasks,
                         preset=args.preset, batch_size=args.batch_size if not prefix else args.prefix_batch_size,
                         micro_batch_size=256, objective="constrained", item_inputs=item_inputs,
                         prefix_training=prefix, num_threads=args.threads, eval_every_epochs=0, progress=False,
                         output_dir=str(work), run=f"{item_inputs}-{int(prefix)}-{len(tasks)}-{dropout}", max_steps=10 ** 6)
    tr = Trainer(cfg)
    plan = tr._epoch_batches(0)
    lengths = tr.trainset.source_lengths(plan.choice)
    times = []
    for k in range(args.warmup + args.steps):
        t0 = time.process_time()
        tr._step(plan.batches[k % len(plan.batches)], plan.choice, lengths)
        if k >= args.warmup:
            times.append(time.process_time() - t0)
    per_step = float(np.mean(times))
    # the same batches again, untimed, under torch's FLOP counter (matmuls and attention, forward and
    # backward): the compute each mode must do, whatever the implementation
    from torch.utils.flop_counter import FlopCounterMode

    flops = []
    for k in range(args.warmup, args.warmup + args.steps):
        with FlopCounterMode(display=False) as counter:
            tr._step(plan.batches[k % len(plan.batches)], plan.choice, lengths)
        flops.append(counter.get_total_flops())
    targets = sum(tr.trainset.target_tokens(b, plan.choice) for b in plan.batches)
    return {"item_inputs": item_inputs, "prefix_training": prefix, "tasks": tasks, "dropout": dropout,
            "steps_per_epoch": len(plan.batches),
            "cpu_seconds_per_step": round(per_step, 4), "cpu_seconds_per_epoch": round(per_step * len(plan.batches), 1),
            "gflop_per_step": round(float(np.mean(flops)) / 1e9, 3),
            "achieved_gflop_per_cpu_second": round(float(np.mean(flops)) / 1e9 / per_step, 1),
            "target_tokens_per_epoch": int(targets)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="Instruments")
    p.add_argument("--data-root", default="data")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--prefix-batch-size", type=int, default=32, help="windows per step under all-prefix training")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare-dropout", action="store_true",
                   help="also measure the all-task modes with torch's stock dropout (the CPU mask dropout's gain)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(ALL_TASKS, [("tokens", False, "mask"), ("pooled", False, "mask")]),
                (["seqrec", "seqimage"], [("tokens", False, "mask"), ("pooled", False, "mask"), ("pooled", True, "mask")])]
        if args.compare_dropout:
            plan.append((ALL_TASKS, [("tokens", False, "torch"), ("pooled", False, "torch")]))
        for tasks, modes in plan:
            for item_inputs, prefix, dropout in modes:
                rows.append(measure(args, tasks, item_inputs, prefix, Path(tmp), dropout))
                r = rows[-1]
                print(f"{','.join(tasks):45s} {item_inputs:7s} prefix={int(prefix)} dropout={dropout:5s} "
                      f"{r['cpu_seconds_per_step']:.3f} CPU-s/step x {r['steps_per_epoch']} steps = "
                      f"{r['cpu_seconds_per_epoch']:.0f} CPU-s/epoch")
    # ratios against the token inputs of the same tasks and dropout
    base = {(len(r["tasks"]), r["dropout"]): r["cpu_seconds_per_epoch"] for r in rows if r["item_inputs"] == "tokens"}
    base_flops = {(len(r["tasks"]), r["dropout"]): r["gflop_per_step"] * r["steps_per_epoch"]
                  for r in rows if r["item_inputs"] == "tokens"}
    for r in rows:
        r["tokens_over_this"] = round(base[len(r["tasks"]), r["dropout"]] / r["cpu_seconds_per_epoch"], 2)
        # the same ratio in FLOPs per epoch: the most any implementation of this mode could gain
        r["tokens_flops_over_this"] = round(base_flops[len(r["tasks"]), r["dropout"]] / (r["gflop_per_step"] * r["steps_per_epoch"]), 2)
        if r["dropout"] == "torch":
            same = next(m for m in rows if m["dropout"] == "mask" and m["item_inputs"] == r["item_inputs"]
                        and m["tasks"] == r["tasks"] and m["prefix_training"] == r["prefix_training"])
            same["torch_dropout_over_this"] = round(r["cpu_seconds_per_epoch"] / same["cpu_seconds_per_epoch"], 2)
    out = {"dataset": args.dataset, "preset": args.preset, "batch_size": args.batch_size, "threads": args.threads,
           "command": "python benchmarks/bench_inputs.py " + " ".join(sys.argv[1:] if argv is None else argv), "rows": rows}
    path = Path(args.out) / f"inputs_cost-{args.dataset}.json"
    atomic_write_json(path, out, indent=1)
    print("\n| tasks | inputs | prefix | dropout | CPU-s / epoch | tokens / this | same in FLOPs | GFLOP/CPU-s | torch dropout / this |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gain = f"{r['torch_dropout_over_this']:.2f}x" if "torch_dropout_over_this" in r else "-"
        print(f"| {','.join(r['tasks'])} | {r['item_inputs']} | {r['prefix_training']} | {r['dropout']} | "
              f"{r['cpu_seconds_per_epoch']:.0f} | {r['tokens_over_this']:.2f}x | {r['tokens_flops_over_this']:.2f}x | "
              f"{r['achieved_gflop_per_cpu_second']:.1f} | {gain} |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
