"""CPU cost of one training step of the generator under the constrained objective, four ways.

- ``before``: what the training loop did until 2026-12-04: every forward asked transformers for a
  generation cache (``config.use_cache``; its constructor deep-copies the whole model config,
  code-token table included) and the output layer ran over the whole vocabulary before the
  constrained loss picked each level's columns.
- ``no-cache``: the same without the cache (``use_cache=False`` by default in ``GenRecT5.forward``).
- ``levels``: also only each level's output columns (``genrec.training.LEVEL_OUTPUTS``).
- ``trimmed``: also no decoder position after the last code level (``genrec.training.TRIM_END_POSITION``;
  that position's only allowed token is ``</s>``): today's loop.

Same trainer, batches, preset and thread count in every mode; the modes take turns over
``--repeats`` rounds of ``--steps`` timed steps (after ``--warmup`` untimed ones) and the median
per-step CPU time is reported, so other work on the machine hits every mode alike.

    python benchmarks/bench_step.py --dataset Scientific --text-codes ../shared/data/Scientific/indexes/rqvae_native/Scientific.index.json
    python benchmarks/bench_step.py --dataset Instruments --preset paper

Writes ``benchmarks/results/step_cost-<dataset>-<preset>.json`` and prints a table.
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

MODES = ("before", "no-cache", "levels", "trimmed")


def _time_steps(tr, plan, lengths, first: int, n: int, mode: str) -> list[float]:
    import genrec.training
    from genrec.model import GenRecT5

    model = tr.acc.unwrap_model(tr.model)
    genrec.training.LEVEL_OUTPUTS = mode in ("levels", "trimmed")
    genrec.training.TRIM_END_POSITION = mode == "trimmed"
    if mode == "before":  # an instance attribute shadows the class's forward for nn.Module.__call__
        model.forward = lambda *a, **k: GenRecT5.forward(model, *a, **{**k, "use_cache": True})
    try:
        out = []
        for k in range(first, first + n):
            t0 = time.process_time()
            tr._step(plan.batches[k % len(plan.batches)], plan.choice, lengths)
            out.append(time.process_time() - t0)
        return out
    finally:
        genrec.training.LEVEL_OUTPUTS = True
        genrec.training.TRIM_END_POSITION = True
        model.__dict__.pop("forward", None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="Scientific")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--text-codes", default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--tasks", default="", help="comma-separated (default: the cpu recipe's finetune tasks the data has)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import numpy as np
    import torch

    from genrec.data.dataset import code_paths
    from genrec.recipes import load_recipe
    from genrec.tasks import parse_tasks
    from genrec.training import Trainer, default_config

    torch.set_num_threads(args.threads)
    recipe = load_recipe("cpu", "finetune")
    tasks = args.tasks.split(",") if args.tasks else recipe["tasks"]
    if not args.tasks and code_paths(Path(args.data_root) / args.dataset, args.dataset)["image"] is None:
        tasks = [t.name for t in parse_tasks(",".join(tasks)) if set(t.modalities) <= {"text"}]  # no image codes
    with tempfile.TemporaryDirectory() as tmp:
        cfg = default_config("finetune", datasets=[args.dataset], data_root=args.data_root, text_codes=args.text_codes,
                             tasks=tasks, preset=args.preset, batch_size=args.batch_size, micro_batch_size=args.batch_size,
                             objective="constrained", item_inputs="pooled", num_threads=args.threads,
                             eval_every_epochs=0, progress=False, output_dir=tmp, run="bench-step", max_steps=10 ** 6)
        tr = Trainer(cfg)
        plan = tr._epoch_batches(0)
        lengths = tr.trainset.source_lengths(plan.choice)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for m in MODES:
            _time_steps(tr, plan, lengths, 0, args.warmup, m)
        for r in range(args.repeats):
            for m in MODES:  # the same batches for every mode within a round
                times[m] += _time_steps(tr, plan, lengths, args.warmup + r * args.steps, args.steps, m)
        vocab = len(tr.tokenizer)
        used_tasks = list(cfg.tasks)
    rows = [{"mode": m, "cpu_seconds_per_step": round(float(np.median(times[m])), 4)} for m in MODES]
    base = rows[0]["cpu_seconds_per_step"]
    for r in rows:
        r["before_over_this"] = round(base / r["cpu_seconds_per_step"], 2)
    out = {"dataset": args.dataset, "preset": args.preset, "tasks": used_tasks, "batch_size": args.batch_size,
           "vocab_size": vocab, "threads": args.threads, "steps_per_mode": args.steps * args.repeats,
           "command": "python benchmarks/bench_step.py " + " ".join(sys.argv[1:] if argv is None else argv), "rows": rows}
    path = Path(args.out) / f"step_cost-{args.dataset}-{args.preset}.json"
    atomic_write_json(path, out, indent=1)
    print(f"{args.dataset}, preset {args.preset}, batch {args.batch_size}, vocabulary {vocab}, "
          f"{args.threads} thread(s), median of {args.steps * args.repeats} steps per mode\n")
    print("| mode | CPU-s / step | before / this |\n|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['cpu_seconds_per_step']:.3f} | {r['before_over_this']:.2f}x |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
