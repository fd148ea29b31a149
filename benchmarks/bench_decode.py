"""Decode throughput: batched trie-table beam search vs ``generate`` + trie callback (CPU).

    python benchmarks/bench_decode.py                      # 200 Instruments test users, 1 thread
    python benchmarks/bench_decode.py --users 500 --threads 2 --gen-batch-sizes 1,8,32

Setup: MQL4GRec's paper-preset T5 (d_model 128, 4+4 layers, 6 heads), RANDOMLY INITIALISED
(seed 0; speed does not depend on training, and both methods decode the same model), the
Instruments text codes with the dedup token (6,250 items, 5 tokens each), task ``seqrec``,
20 beams, 20 returned sequences, histories of the 20 most recent items, a seeded random sample of
test users. Each method runs in its own subprocess (same saved model, same sources), so peak memory
is measured per method as the growth of the process's peak RSS over its RSS before decoding (torch
allocations are invisible to tracemalloc). Time is measured after one warm-up batch, as wall
time and as the process's CPU time (the machine is shared: CPU time is the steadier figure with one
thread). The top-20 lists of every user timed are compared between the methods in the same run.

Writes benchmarks/results/decode_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def worker(args: argparse.Namespace) -> None:
    import torch
    from transformers import T5ForConditionalGeneration

    from genrec.decoding import CodeTrie, beam_search, generate_with_trie, pad_sources
    from genrec.tokenizer import load_tokenizer

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    tok = load_tokenizer(work / "tokenizer")
    model = T5ForConditionalGeneration.from_pretrained(str(work / "model")).eval()
    data = json.loads((work / "sources.json").read_text())
    sources, code_ids = data["sources"], data["code_ids"]
    trie = CodeTrie.from_token_ids(code_ids)
    table = trie.prefix_table(model.config.decoder_start_token_id, model.config.eos_token_id)
    bs = args.batch_size
    # similar lengths share a batch for both methods (less padding)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))

    def decode(idx):
        ids, mask = pad_sources([sources[i] for i in idx], tok.pad_token_id)
        if args.worker == "fast":
            return beam_search(model, ids, mask, trie, args.beams)
        return generate_with_trie(model, ids, mask, trie, args.beams, prefix_table=table)

    rss_before = _rss_kb()
    decode(order[:bs])  # warm-up (allocator, lazy initialisation), not timed
    leaves: list[list[int]] = [[] for _ in sources]
    scores: list[list[float]] = [[] for _ in sources]
    with torch.inference_mode():
        w0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            res = decode(idx)
            for i, lv, sc in zip(idx, res.leaves.tolist(), res.scores.tolist()):
                leaves[i], scores[i] = lv, sc
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(args.result).write_text(json.dumps({
        "method": args.worker, "batch_size": bs, "threads": torch.get_num_threads(), "users": len(sources),
        "wall_s": wall, "cpu_s": cpu, "rss_before_mb": rss_before / 1024, "peak_rss_mb": peak_kb / 1024,
        "peak_delta_mb": (peak_kb - rss_before) / 1024, "leaves": leaves, "scores": scores}))


def prepare(args: argparse.Namespace, work: Path) -> dict:
    import numpy as np
    import torch

    from genrec.data import load_dataset
    from genrec.evaluation import build_sources
    from genrec.model import build_model
    from genrec.tasks import dataset_codes, get_task
    from genrec.tokenizer import build_tokenizer, code_token_ids

    roots = [Path(args.data_root)] if args.data_root else [REPO / "data", REPO.parent / "shared" / "data"]
    root = next((r for r in roots if (r / "Instruments" / "Instruments.index_lemb.json").is_file()), None)
    if root is None:
        sys.exit(f"bench_decode: Instruments not found under {', '.join(map(str, roots))}")
    ds = load_dataset(root, "Instruments")
    codes = dataset_codes(ds, dedup=True)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model("paper", tok)
    model.save_pretrained(str(work / "model"))
    tok.save_pretrained(str(work / "tokenizer"))
    test = ds.split(20).test
    pick = sorted(random.Random(args.seed).sample(range(len(test)), min(args.users, len(test))))
    samples = [test[i] for i in pick]
    sources = build_sources(tok, get_task("seqrec"), codes, samples)
    code_ids = code_token_ids(tok, codes["text"]).tolist()
    (work / "sources.json").write_text(json.dumps({"sources": sources, "code_ids": code_ids}))
    lengths = np.array([len(s) for s in sources])
    return {"data_root": str(root), "items": ds.num_items, "distinct_codes": len(set(codes["text"])),
            "code_tokens": len(codes["text"][0]), "vocab": len(tok), "users": len(sources),
            "source_tokens_mean": round(float(lengths.mean()), 1), "source_tokens_max": int(lengths.max()),
            "params": sum(p.numel() for p in model.parameters())}


def run_worker(method: str, batch_size: int, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"result-{method}-{batch_size}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--work", str(work),
           "--batch-size", str(batch_size), "--threads", str(args.threads), "--beams", str(args.beams),
           "--result", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_decode: worker {method} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def compare(fast: dict, ref: dict) -> dict:
    same = sum(a == b for a, b in zip(fast["leaves"], ref["leaves"]))
    diff = max((abs(x - y) for a, b in zip(fast["scores"], ref["scores"]) for x, y in zip(a, b)
                if x != float("-inf")), default=0.0)
    return {"identical_lists": same, "users": len(fast["leaves"]), "max_abs_score_diff": diff}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--beams", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16, help="users per call of our search")
    p.add_argument("--gen-batch-sizes", default="1,8", help="users per generate call (comma-separated)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode_speed.json"))
    p.add_argument("--worker", choices=["fast", "generate"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    gen_sizes = [int(x) for x in args.gen_batch_sizes.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="bench_decode.") as tmp:
        work = Path(tmp)
        setup = prepare(args, work)
        print(f"Instruments seqrec: {setup['users']} test users (mean {setup['source_tokens_mean']} source tokens), "
              f"{setup['items']} items / {setup['code_tokens']}-token codes, paper preset (random init, "
              f"{setup['params'] / 1e6:.2f}M params), beams {args.beams}, {args.threads} thread(s)", flush=True)
        t0 = time.perf_counter()
        fast = run_worker("fast", args.batch_size, args, work)
        gens = [run_worker("generate", b, args, work) for b in gen_sizes]
        total = time.perf_counter() - t0

    rows = []
    for r in [fast] + gens:
        rows.append({k: r[k] for k in ("method", "batch_size", "threads", "users", "wall_s", "cpu_s",
                                       "rss_before_mb", "peak_rss_mb", "peak_delta_mb")})
        rows[-1]["users_per_s_wall"] = r["users"] / r["wall_s"]
        rows[-1]["users_per_s_cpu"] = r["users"] / r["cpu_s"]
        rows[-1]["ms_per_user_cpu"] = 1000 * r["cpu_s"] / r["users"]
    for row, g in zip(rows[1:], gens):
        row["vs_fast"] = compare(fast, g)
        row["speedup_of_fast_wall"] = rows[0]["users_per_s_wall"] / row["users_per_s_wall"]
        row["speedup_of_fast_cpu"] = rows[0]["users_per_s_cpu"] / row["users_per_s_cpu"]

    header = ("| method | users/call | users/s (wall) | users/s (CPU) | ms/user (CPU) | peak RSS delta MB | "
              "fast is x faster (wall / CPU) | identical top-20 |")
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        name = "trie-table beam search (ours)" if row["method"] == "fast" else "generate + trie callback"
        speed = (f"{row['speedup_of_fast_wall']:.1f} / {row['speedup_of_fast_cpu']:.1f}"
                 if "vs_fast" in row else "-")
        same = (f"{row['vs_fast']['identical_lists']}/{row['vs_fast']['users']} "
                f"(max score diff {row['vs_fast']['max_abs_score_diff']:.1e})" if "vs_fast" in row else "-")
        print(f"| {name} | {row['batch_size']} | {row['users_per_s_wall']:.1f} | {row['users_per_s_cpu']:.1f} | "
              f"{row['ms_per_user_cpu']:.1f} | {row['peak_delta_mb']:.0f} | {speed} | {same} |")

    import torch
    import transformers

    result = {
        "benchmark": "constrained beam search decode throughput (CPU)",
        "setup": {**setup, "beams": args.beams, "returned": args.beams, "threads": args.threads,
                  "model_init": "random (seed 0)", "task": "seqrec", "max_history": 20,
                  "timing": "after one warm-up batch; wall and process CPU time; each method in its own subprocess"},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "load_avg_at_end": os.getloadavg()},
        "rows": rows, "total_seconds": total,
    }
    out = Path(args.out)
    from genrec.utils.io import atomic_write_json

    atomic_write_json(out, result, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
