"""User vs system CPU time of a baseline's training run, with and without heap reuse of large buffers.

    python benchmarks/bench_cpu_split.py --dataset Beauty --data-root ../shared/data --budget-minutes 2

Runs ``python -m genrec.baselines train --model MODEL ... --threads 1`` once per variant in a fresh
process and reads the child's ``getrusage``: user and system seconds, minor page faults, peak RSS,
and the training steps it reached. ``default`` is glibc's own allocation behaviour
(``GENREC_REUSE_FREED_MEMORY=0``), ``reuse`` the trainer's setting (``genrec.utils.malloc``).
A fixed budget means the variants train different numbers of steps; compare the per-step figures.
Both variants use the chunked full-softmax loss (``genrec.baselines.chunked_ce``); the figures
measured before it and the heap reuse are kept in the results file (``earlier_measurements``). The
machine is shared: user seconds per step vary with its load.
Writes ``benchmarks/results/cpu_split_<model>_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.utils.io import atomic_write_json  # noqa: E402
from genrec.utils.malloc import ENV  # noqa: E402

VARIANTS = {"default": "0", "reuse": "1"}


def run_once(cmd: list[str], env_value: str) -> dict:
    env = {**os.environ, ENV: env_value, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full stderr pipe would block the child
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO, text=True)
        out_text = proc.stdout.read()
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would add up every earlier child)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        err.seek(0)
        err_text = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err_text[-2000:]}")
    result = json.loads(out_text)
    steps = int(result["steps"])
    return {"user_s": round(ru.ru_utime, 1), "system_s": round(ru.ru_stime, 1),
            "system_share": round(ru.ru_stime / max(ru.ru_utime + ru.ru_stime, 1e-9), 3),
            "wall_s": round(wall, 1), "steps": steps, "train_seconds": result["train_seconds"],
            "cpu_ms_per_step": round(1000 * (ru.ru_utime + ru.ru_stime) / max(steps, 1), 1),
            "system_ms_per_step": round(1000 * ru.ru_stime / max(steps, 1), 1),
            "minor_faults": ru.ru_minflt, "max_rss_mb": round(ru.ru_maxrss / 1024),
            "test_NDCG@10": round(result["NDCG@10"], 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sasrec")
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--budget-minutes", type=float, default=2.0)
    p.add_argument("--variants", default="default,reuse", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--extra", default="", help="more flags for genrec.baselines train, e.g. '--max-steps 50'")
    p.add_argument("--out", default=None, help="default benchmarks/results/cpu_split_<model>_<dataset>.json")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; expected {', '.join(VARIANTS)}")
    cmd = [sys.executable, "-m", "genrec.baselines", "train", "--model", args.model, "--dataset", args.dataset,
           "--data-root", args.data_root, "--budget-minutes", str(args.budget_minutes), "--threads", "1",
           *args.extra.split()]
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"cpu_split_{args.model}_{args.dataset}.json"
    results = {"command": "python benchmarks/bench_cpu_split.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "train_command": " ".join(cmd[1:]), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
               "load_before": [round(x, 2) for x in os.getloadavg()], "runs": {}}
    for v in variants:
        try:
            results["runs"][v] = run_once(cmd, VARIANTS[v])
        except (RuntimeError, json.JSONDecodeError, KeyError) as e:
            print(f"bench_cpu_split.py: error: {e}", file=sys.stderr)
            return 2
        print(v, json.dumps(results["runs"][v]), flush=True)
    results["note"] = "CPU shared with other jobs: wall times are indicative; user/system split is per process"
    if out.is_file():  # figures of earlier versions of the code stay with the new ones
        earlier = json.loads(out.read_text(encoding="utf-8")).get("earlier_measurements")
        if earlier:
            results["earlier_measurements"] = earlier
    atomic_write_json(out, results, indent=1)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
