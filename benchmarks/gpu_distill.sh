#!/usr/bin/env bash
# Distillation on one GPU: the small cpu-recipe student alone and distilled from a paper-preset
# teacher run, side by side under the same wall budget, then scored on every Instruments test user.
#
#   bash benchmarks/gpu_distill.sh OUT TEACHER_RUN [BUDGET_MINUTES] [T] [ALPHA]
#   bash benchmarks/gpu_distill.sh $OUT log/gpu-paper 3        # teacher: benchmarks/gpu_instruments.sh's paper run
#
# Writes OUT/summary.json and a table; the student run folders (no optimizer state) as OUT/students.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: gpu_distill.sh OUT TEACHER_RUN [BUDGET_MINUTES] [T] [ALPHA]}
TEACHER=${2:?usage: gpu_distill.sh OUT TEACHER_RUN [BUDGET_MINUTES] [T] [ALPHA]}
BUDGET=${3:-3}; T=${4:-2}; ALPHA=${5:-0.5}
RUNS=${RUNS_DIR:-/tmp/gpu-distill}
export GENREC_CACHE=${GENREC_CACHE:-/tmp/genrec-cache} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT" "$RUNS/logs"
PY=${PYTHON:-python3}
if ! command -v python >/dev/null; then mkdir -p /tmp/pybin && ln -sf "$(command -v "$PY")" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH; fi
COMMON="--dataset Instruments --data-root data --output-dir $RUNS --no-progress --eval-batch-size 1024 --recipe cpu
        --time-budget-minutes $BUDGET --budget-clock wall --anneal-minutes $BUDGET --scheduler cosine --overwrite ${EXTRA:-}"
t0=$(date +%s)
# the token cache first, by one process (two writers would race)
$PY -c "
import sys; sys.argv[0] = 'cache'
from genrec.training import default_config, load_training_data, resolve_vocab
from genrec.tokenizer import build_tokenizer
import dataclasses
cfg = dataclasses.replace(default_config('finetune'), datasets=['Instruments'], data_root='data')
load_training_data(cfg, build_tokenizer(resolve_vocab(cfg)))
" >"$RUNS/logs/cache.log" 2>&1 || { tail -20 "$RUNS/logs/cache.log"; exit 1; }
run_one() {
  local name=$1; shift
  $PY -m genrec.finetune $COMMON --run "$name" "$@" >"$RUNS/logs/$name.log" 2>&1 &&
  bash scripts/evaluate.sh "$RUNS/$name" Instruments --no-progress ${EVAL_EXTRA:-} >>"$RUNS/logs/$name.log" 2>&1
}
run_one student-alone & a=$!
run_one student-distilled --distill-from "$TEACHER" --distill-temperature "$T" --distill-alpha "$ALPHA" & b=$!
( sleep $(( ${DEADLINE:-270} - ($(date +%s) - t0) )); echo "deadline: stopping what still runs";
  pkill -f 'genrec[./](evaluate|fusion|finetune)' ) & watchdog=$!
wait $a || { echo "student-alone failed"; tail -20 "$RUNS/logs/student-alone.log"; }
wait $b || { echo "student-distilled failed"; tail -20 "$RUNS/logs/student-distilled.log"; }
pkill -P $watchdog 2>/dev/null; kill $watchdog 2>/dev/null
echo "finished $(( $(date +%s) - t0 )) s after the start"
$PY benchmarks/run_summary.py "$OUT/summary.json" Instruments "$RUNS/student-alone" "$RUNS/student-distilled"
tar -C "$RUNS" --exclude='checkpoint-*' --exclude='last' --exclude='*.predictions.jsonl' -czf "$OUT/students.tgz" student-alone student-distilled logs 2>/dev/null
ls -la "$OUT"
