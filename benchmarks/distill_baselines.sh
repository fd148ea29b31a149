#!/usr/bin/env bash
# Distillation of a baseline (issue 14, item 5): a SASRec teacher (hidden 64) teaches a hidden-16
# student; the student trained alone under the same budget is the reference. One thread each;
# wall-clock budgets (the CLI has no CPU clock), so run it on an otherwise idle machine for exact figures;
# every run resumes or skips when its folder is finished. Results: OUT/<run>/result.json
#
#   bash benchmarks/distill_baselines.sh [DATASET] [MINUTES] [OUT]
set -euo pipefail
DS=${1:-Office}; MIN=${2:-3}; OUT=${3:-benchmarks/results/distill-$DS}
ROOT=${DATA_ROOT:-../shared/data}
run() { python -m genrec.baselines train --dataset "$DS" --data-root "$ROOT" --model sasrec --threads 1 \
          --budget-minutes "$MIN" --output-dir "$OUT/$1" "${@:2}"; }
run teacher-h64
run student-h16 --set hidden=16
run student-h16-distill --set hidden=16 --distill-from "$OUT/teacher-h64" --distill-temperature 2 --distill-alpha 0.5
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = []
for name in ("teacher-h64", "student-h16", "student-h16-distill"):
    r = json.loads((Path(sys.argv[1]) / name / "result.json").read_text())
    rows.append((name, r["NDCG@10"], r["HR@10"], r.get("params"), r.get("epochs")))
print("| run | test NDCG@10 | test HR@10 | params | epochs |\n|---|---|---|---|---|")
for n, nd, hr, p, e in rows:
    print(f"| {n} | {nd:.4f} | {hr:.4f} | {p} | {e} |")
PY
