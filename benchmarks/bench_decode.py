"""Decode throughput: batched trie-table beam search vs ``generate`` + trie callback (CPU).

    python benchmarks/bench_decode.py                      # 200 Instruments test users, 1 thread
    python benchmarks/bench_decode.py --users 500 --threads 1,2 --gen-batch-sizes 1,8,32

Setup: MQL4GRec's paper-preset T5 (d_model 128, 4+4 layers, 6 heads), RANDOMLY INITIALISED
(seed 0; speed does not depend on training, and both methods decode the same model), the
Instruments text codes with the dedup token (6,250 items, 5 tokens each), task ``seqrec``,
20 beams, 20 returned sequences, histories of the 20 most recent items, a seeded random sample of
test users. Each method runs in its own subprocess (same saved model, same sources), so peak memory
is measured per method as the growth of the process's peak RSS over its RSS before decoding (torch
allocations are invisible to tracemalloc). Time is measured after one warm-up batch, as wall
time and as the process's CPU time (the machine is shared: CPU time is the steadier figure with one
thread). The top-20 lists of every user timed are compared between the methods in the same run.

The run also prints the compute floor: the FLOPs an exact search must spend per user
(:func:`decode_flops`: encoder, cross-attention keys/values, 1 + beams x code-length decoder rows
through every layer and the full-vocabulary output layer) at the best fp32 matmul rate measured on
this machine at the decoder's shapes. No exact fp32 search can beat it, so ``generate``'s time over
the floor bounds the speed-up any implementation can show on this CPU.

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
    from genrec.model import load_model

    from genrec.decoding import CodeTrie, beam_search, generate_with_trie, pad_sources
    from genrec.tokenizer import load_tokenizer

    torch.set_num_threads(int(args.threads))
    work = Path(args.work)
    tok = load_tokenizer(work / "tokenizer")
    model = load_model(work / "model").eval()
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


def decode_flops(cfg, source_lengths: list[int], levels: int, beams: int, vocab: int) -> float:
    """Multiply-add FLOPs (x2) an exact beam search needs per user, on average over the given sources.

    Encoder: every source token through every layer, plus its attention products. Cross-attention
    keys/values: once per source token and decoder layer. Decoder: one row for the start token, then
    ``beams`` rows for each of the ``levels`` code tokens fed back (the last one yields ``</s>``'s
    log-probability), each through every layer and the full-vocabulary output matmul. Nothing cheaper
    gives ``generate``'s scores: every kept beam's distribution over the whole vocabulary is needed.
    """
    d, inner, ff = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff
    total = 0.0
    for S in source_lengths:
        enc = cfg.num_layers * (S * (4 * d * inner + 2 * d * ff) + 2 * S * S * inner)
        cross_kv = cfg.num_decoder_layers * S * 2 * d * inner
        rows = 1 + beams * levels
        dec = rows * (cfg.num_decoder_layers * (6 * d * inner + 2 * d * ff + 2 * S * inner + 2 * (levels + 1) * inner)
                      + d * vocab)
        total += 2.0 * (enc + cross_kv + dec)
    return total / len(source_lengths)


def matmul_rate(threads: int, rows: int, cfg, vocab: int) -> float:
    """Best GFLOP/s of this machine's fp32 matmuls at the decoder's shapes (``rows`` x weight)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    d, inner, ff = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff
    best = 0.0
    for k, n in ((d, 3 * inner), (inner, d), (d, ff), (ff, d), (d, vocab)):
        x, w = torch.randn(rows, k), torch.randn(n, k)
        for _ in range(5):
            F.linear(x, w)
        reps = max(5, int(3e9 / (2 * rows * k * n)))
        t0 = time.perf_counter()
        for _ in range(reps):
            F.linear(x, w)
        best = max(best, 2 * rows * k * n * reps / (time.perf_counter() - t0) / 1e9)
    return best


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
            "params": sum(p.numel() for p in model.parameters()),
            "gflop_per_user": decode_flops(model.config, lengths.tolist(), len(codes["text"][0]), args.beams,
                                           len(tok)) / 1e9}


def prepare_run(args: argparse.Namespace, work: Path) -> dict:
    """The trained model of ``--ckpt`` (its best checkpoint) on its own dataset, codes and test users."""
    import numpy as np

    from genrec.data import load_dataset
    from genrec.evaluation import build_sources, load_run
    from genrec.tasks import dataset_codes, get_task
    from genrec.tokenizer import code_token_ids

    run = load_run(args.ckpt)
    cfg = run.config
    ds = load_dataset(args.data_root or cfg["data_root"], cfg["datasets"][0], text_codes=cfg.get("text_codes"),
                      image_codes=cfg.get("image_codes"))
    codes = dataset_codes(ds, dedup=cfg.get("dedup_codes", True))
    run.model.save_pretrained(str(work / "model"))
    run.tokenizer.save_pretrained(str(work / "tokenizer"))
    test = ds.split(cfg.get("max_history", 20)).test
    pick = sorted(random.Random(args.seed).sample(range(len(test)), min(args.users, len(test))))
    sources = build_sources(run.tokenizer, get_task("seqrec"), codes, [test[i] for i in pick])
    code_ids = code_token_ids(run.tokenizer, codes["text"]).tolist()
    (work / "sources.json").write_text(json.dumps({"sources": sources, "code_ids": code_ids}))
    lengths = np.array([len(s) for s in sources])
    return {"run": str(args.ckpt), "dataset": ds.name, "preset": cfg.get("preset"), "items": ds.num_items,
            "distinct_codes": len(set(codes["text"])), "code_tokens": len(codes["text"][0]), "vocab": len(run.tokenizer),
            "users": len(sources), "source_tokens_mean": round(float(lengths.mean()), 1),
            "source_tokens_max": int(lengths.max()), "params": sum(p.numel() for p in run.model.parameters()),
            "item_inputs": cfg.get("item_inputs", "tokens"), "objective": cfg.get("objective", "full")}


def run_worker(method: str, batch_size: int, threads: int, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"result-{method}-{batch_size}-{threads}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--work", str(work),
           "--batch-size", str(batch_size), "--threads", str(threads), "--beams", str(args.beams),
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
    p.add_argument("--batch-size", type=int, default=32, help="users per call of our search")
    p.add_argument("--gen-batch-sizes", default="1,8", help="users per generate call (comma-separated)")
    p.add_argument("--threads", default="1", help="torch threads; a comma list runs every method at each count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "decode_speed.json"))
    p.add_argument("--ckpt", default=None, help="decode this trained generator run (its best checkpoint, own dataset "
                   "and codes) instead of a random paper-preset model; no compute floor is computed then")
    p.add_argument("--worker", choices=["fast", "generate"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    gen_sizes = [int(x) for x in args.gen_batch_sizes.split(",") if x]
    thread_counts = [int(x) for x in str(args.threads).split(",") if x]
    rows, floors = [], []
    with tempfile.TemporaryDirectory(prefix="bench_decode.") as tmp:
        work = Path(tmp)
        setup = prepare_run(args, work) if args.ckpt else prepare(args, work)
        if args.ckpt and (setup["item_inputs"] != "tokens" or setup["objective"] != "full") and gen_sizes:
            # generate() encodes code tokens and scores the full softmax: not what this run was trained for
            print(f"{args.ckpt}: {setup['objective']} objective / {setup['item_inputs']} inputs: generate + trie "
                  "callback decodes another model; timing our search only", flush=True)
            gen_sizes = []
        what = (f"{args.ckpt} ({setup['dataset']}, {setup['preset']} preset, trained" if args.ckpt else
                "Instruments, paper preset (random init")
        print(f"{what}, {setup['params'] / 1e6:.2f}M params) seqrec: {setup['users']} test users (mean "
              f"{setup['source_tokens_mean']} source tokens), {setup['items']} items / {setup['code_tokens']}-token "
              f"codes, beams {args.beams}, threads {thread_counts}", flush=True)
        from transformers import T5Config

        cfg = T5Config.from_pretrained(str(work / "model"))
        t0 = time.perf_counter()
        for threads in thread_counts:
            fast = run_worker("fast", args.batch_size, threads, args, work)
            gens = [run_worker("generate", b, threads, args, work) for b in gen_sizes]
            block = []
            for r in [fast] + gens:
                row = {k: r[k] for k in ("method", "batch_size", "threads", "users", "wall_s", "cpu_s",
                                         "rss_before_mb", "peak_rss_mb", "peak_delta_mb")}
                row.update(users_per_s_wall=r["users"] / r["wall_s"], users_per_s_cpu=r["users"] / r["cpu_s"],
                           ms_per_user_cpu=1000 * r["cpu_s"] / r["users"])
                block.append(row)
            for row, g in zip(block[1:], gens):
                row["vs_fast"] = compare(fast, g)
                row["speedup_of_fast_wall"] = block[0]["users_per_s_wall"] / row["users_per_s_wall"]
                row["speedup_of_fast_cpu"] = block[0]["users_per_s_cpu"] / row["users_per_s_cpu"]
            rows += block
            if args.ckpt:  # the FLOP count below assumes the paper preset's token inputs
                continue
            rate = matmul_rate(threads, args.batch_size * args.beams, cfg, setup["vocab"])
            floor_ms = setup["gflop_per_user"] / rate * 1000
            # one thread: CPU time (steady on a shared machine); several: wall time
            key = "users_per_s_cpu" if threads == 1 else "users_per_s_wall"
            floors.append({"threads": threads, "matmul_gflops": rate, "floor_ms_per_user": floor_ms, "time": key,
                           "fast_ms_per_user": 1000 / block[0][key],
                           "fast_over_floor": 1000 / block[0][key] / floor_ms,
                           "max_speedup_over_generate": {str(g["batch_size"]): 1000 / g[key] / floor_ms
                                                         for g in block[1:]}})
        total = time.perf_counter() - t0

    header = ("| method | threads | users/call | users/s (wall) | users/s (CPU) | ms/user (CPU) | peak RSS delta MB | "
              "fast is x faster (wall / CPU) | identical top-20 |")
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        name = "trie-table beam search (ours)" if row["method"] == "fast" else "generate + trie callback"
        speed = (f"{row['speedup_of_fast_wall']:.1f} / {row['speedup_of_fast_cpu']:.1f}"
                 if "vs_fast" in row else "-")
        same = (f"{row['vs_fast']['identical_lists']}/{row['vs_fast']['users']} "
                f"(max score diff {row['vs_fast']['max_abs_score_diff']:.1e})" if "vs_fast" in row else "-")
        print(f"| {name} | {row['threads']} | {row['batch_size']} | {row['users_per_s_wall']:.1f} | "
              f"{row['users_per_s_cpu']:.1f} | {row['ms_per_user_cpu']:.1f} | {row['peak_delta_mb']:.0f} | {speed} | {same} |")

    print()
    for f in floors:
        best = ", ".join(f"{v:.1f}x at {b} user(s)/call" for b, v in f["max_speedup_over_generate"].items())
        print(f"{f['threads']} thread(s): compute floor {f['floor_ms_per_user']:.1f} ms/user ({setup['gflop_per_user']:.2f} "
              f"GFLOP/user at the best measured matmul rate, {f['matmul_gflops']:.0f} GFLOP/s); ours takes "
              f"{f['fast_over_floor']:.1f}x the floor; an exact fp32 search at the floor would be {best} faster "
              f"than generate ({'CPU' if f['threads'] == 1 else 'wall'} time)")

    import torch
    import transformers

    result = {
        "benchmark": "constrained beam search decode throughput (CPU)",
        "setup": {**setup, "beams": args.beams, "returned": args.beams, "threads": thread_counts,
                  "model_init": "trained run" if args.ckpt else "random (seed 0)", "task": "seqrec", "max_history": 20,
                  "timing": "after one warm-up batch; wall and process CPU time; each method in its own subprocess"},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "load_avg_at_end": os.getloadavg()},
        "rows": rows, "compute_floor": floors, "total_seconds": total,
    }
    out = Path(args.out)
    from genrec.utils.io import atomic_write_json

    atomic_write_json(out, result, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
