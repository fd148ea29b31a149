"""Training throughput and peak RSS: our loop vs Hugging Face ``Seq2SeqTrainer``, side by side.

Same model (T5 preset, same seed), same pre-tokenised examples (one dataset's finetuning tasks),
same global batch, same precision (fp32 on CPU), same optimizer settings and number of steps.
Every configuration runs in its own subprocess, so peak RSS is per configuration; the
configurations are interleaved over ``--repeats`` rounds and the median is reported, because
the cores may be shared with other work.

Throughput counts the steps after ``--warmup-steps`` (timestamps at the end of each optimizer
step, data loading included). The default 50 timed steps cover one whole length-grouped
"megabatch" (50 batches, longest first) of the ``hf-grouped`` sampler; fewer steps would time
only its longest batches and understate it. Rows:

- ``ours``: genrec.training with its defaults: each global batch is sorted by length and cut into
  micro-batches that minimise padded tokens plus a per-forward cost (gradients equal one big batch).
- ``ours-grouped``: the same loop with ``--group-by-length`` (HF-style length-grouped batches).
- ``ours-1mb``: the same loop with one micro-batch per step (padding like the HF default), to
  separate the loop's own overhead from the padding win.
- ``hf``: Seq2SeqTrainer defaults (random batches, DataCollatorForSeq2Seq dynamic padding).
- ``hf-grouped``: Seq2SeqTrainer with ``train_sampling_strategy="group_by_length"`` (its own padding reduction).

    python benchmarks/bench_train.py                      # Instruments from ../shared/data
    python benchmarks/bench_train.py --data-root data --dataset Synthetic --preset tiny --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("ours", "ours-grouped", "ours-1mb", "hf", "hf-grouped")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _config(args, out_dir: str, one_micro_batch: bool = False, grouped: bool = False):
    from genrec.training import default_config

    micro = dict(micro_batch_size=args.batch_size, forward_cost_tokens=1e12) if one_micro_batch else {}
    micro["group_by_length"] = grouped
    return default_config(
        "finetune", datasets=[args.dataset], data_root=args.data_root, tasks=args.tasks.split(","), preset=args.preset,
        output_dir=out_dir, run="bench", batch_size=args.batch_size, **micro, lr=5e-4,
        max_steps=args.warmup_steps + args.steps, eval_every_epochs=0, log_every_steps=1, progress=False,
        num_threads=args.threads, cache_dir=args.cache_dir, seed=args.seed)


def _throughput(times: list[float], batch: int, warmup: int) -> float:
    """Samples/s over the steps after ``warmup`` (``times`` = end time of every step)."""
    t = times[warmup - 1:] if warmup > 0 else times
    return batch * (len(t) - 1) / (t[-1] - t[0])


def worker_ours(args, one_micro_batch: bool = False, grouped: bool = False) -> dict:
    from genrec.training import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(_config(args, tmp, one_micro_batch, grouped))
        setup = time.perf_counter() - t0
        trainer.fit()
        rows = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if r["type"] == "train"]
    times = [r["train_seconds"] for r in train]
    losses = [r["loss"] for r in train]
    return {"samples_per_s": _throughput(times, args.batch_size, args.warmup_steps), "setup_s": setup,
            "first_loss": losses[0], "last_loss": losses[-1], "steps": len(times)}


def worker_hf(args, grouped: bool) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    from genrec.data_pipeline import TrainSet
    from genrec.model import build_model
    from genrec.tokenizer import build_tokenizer
    from genrec.training import load_training_data

    # The examples our loop trains on (same encoding, same fusion coin as our epoch 0).
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cfg = _config(args, tmp)
        tokenizer = build_tokenizer()
        ts = TrainSet([p for d in load_training_data(cfg, tokenizer) for p in d.train], cfg.seed)
        choice = ts.variant_choice(0)
        torch.manual_seed(args.seed)
        model = build_model(args.preset, tokenizer)

        class Examples(torch.utils.data.Dataset):
            def __len__(self):
                return len(ts)

            def __getitem__(self, i):
                (src,), (tgt,) = ts.examples([i], choice)
                return {"input_ids": src.tolist(), "labels": tgt.tolist()}

        class Clock(TrainerCallback):
            times: list[float] = []

            def on_step_end(self, a, state, control, **kw):
                Clock.times.append(time.perf_counter())

            def on_log(self, a, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    Clock.losses.append(logs["loss"])

        Clock.losses = []
        targs = Seq2SeqTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.warmup_steps + args.steps,
            learning_rate=5e-4, weight_decay=0.01, warmup_steps=0.01, lr_scheduler_type="cosine", max_grad_norm=1.0,
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
            dataloader_num_workers=0, dataloader_pin_memory=False, seed=args.seed, use_cpu=True,
            train_sampling_strategy="group_by_length" if grouped else "random", remove_unused_columns=False)
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, padding=True, label_pad_token_id=-100)
        trainer = Seq2SeqTrainer(model=model, args=targs, train_dataset=Examples(), data_collator=collator,
                                 callbacks=[Clock()])
        setup = time.perf_counter() - t0
        if args.threads:
            torch.set_num_threads(args.threads)
        trainer.train()
    return {"samples_per_s": _throughput(Clock.times, args.batch_size, args.warmup_steps), "setup_s": setup,
            "first_loss": Clock.losses[0] if Clock.losses else None,
            "last_loss": Clock.losses[-1] if Clock.losses else None, "steps": len(Clock.times)}


def run_worker(args) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.worker == "ours":
        out = worker_ours(args)
    elif args.worker == "ours-grouped":
        out = worker_ours(args, grouped=True)
    elif args.worker == "ours-1mb":
        out = worker_ours(args, one_micro_batch=True)
    else:
        out = worker_hf(args, grouped=args.worker == "hf-grouped")
    out["peak_rss_mb"] = _peak_rss_mb()
    import torch

    out["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(out), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = REPO.parent / "shared" / "data"
    p.add_argument("--data-root", default=str(shared if (shared / "Instruments").is_dir() else REPO / "data"))
    p.add_argument("--dataset", default="Instruments")
    p.add_argument("--tasks", default="seqrec,seqimage,item2image,image2item,fusionseqrec")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=50, help="timed steps (after the warmup steps)")
    p.add_argument("--warmup-steps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in every configuration (1 is fastest for all of them on busy shared cores)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the median is reported")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "genrec-bench-cache"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_throughput.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        run_worker(args)
        return 0

    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    load = []
    for r in range(args.repeats):
        for m in modes:
            load.append(os.getloadavg()[0])
            proc = subprocess.run(base + ["--worker", m], capture_output=True, text=True, env=env, cwd=REPO)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{m} failed (exit {proc.returncode})")
            res = json.loads(line[-1][len("RESULT "):])
            runs[m].append(res)
            print(f"round {r + 1} {m:11s} {res['samples_per_s']:8.1f} samples/s  peak RSS {res['peak_rss_mb']:7.0f} MB"
                  f"  loss {res['first_loss']:.3f} -> {res['last_loss']:.3f}", flush=True)

    summary = {}
    for m, rs in runs.items():
        summary[m] = {"samples_per_s": statistics.median(x["samples_per_s"] for x in rs),
                      "samples_per_s_runs": [round(x["samples_per_s"], 2) for x in rs],
                      "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs),
                      "last_loss": [x["last_loss"] for x in rs], "setup_s": [round(x["setup_s"], 1) for x in rs]}
    ref = summary.get("hf")
    print()
    print("| config | samples/s | vs hf | vs hf-grouped | peak RSS MB |")
    print("|---|---|---|---|---|")
    for m, s in summary.items():
        vs = lambda k: f"{s['samples_per_s'] / summary[k]['samples_per_s']:.2f}x" if k in summary else "-"  # noqa: E731
        print(f"| {m} | {s['samples_per_s']:.1f} | {vs('hf')} | {vs('hf-grouped')} | {s['peak_rss_mb']:.0f} |")
    result = {
        "benchmark": "train_throughput", "device": "cpu", "precision": "fp32",
        "dataset": args.dataset, "tasks": args.tasks.split(","), "preset": args.preset,
        "batch_size": args.batch_size,
        "timed_steps": args.steps, "warmup_steps": args.warmup_steps, "threads": args.threads,
        "repeats": args.repeats, "cpu_count": os.cpu_count(), "load_avg_at_starts": [round(x, 2) for x in load],
        "results": summary,
        "ratios": {f"{m}_vs_{b}": summary[m]["samples_per_s"] / summary[b]["samples_per_s"]
                   for m in summary for b in ("hf", "hf-grouped") if b in summary and m != b and m.startswith("ours")},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if ref is None:
        result["note"] = "hf baseline not run"
    from genrec.utils.io import atomic_write_json

    atomic_write_json(args.out, result, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
