#!/usr/bin/env bash
# Instruments finetune + full test evaluation on one GPU, for a short lease: the published recipe
# and the CPU-ladder levers, trained side by side on the one GPU under the same wall budget.
#
#   bash benchmarks/gpu_instruments.sh OUT [BUDGET_MINUTES]
#
# Needs data/Instruments (inter.json and both code files). Every run starts from scratch (no
# pretraining), lays its cosine decay over the budget (--anneal-minutes; the paper's schedule is laid
# over 200 epochs, which a short budget would never reach), and is scored on every test user, text,
# image and fused (scripts/evaluate.sh). A 2-step preflight of each configuration runs first, so a
# broken setup fails in seconds rather than after the budget.
#
# Runs (RUNSET=recipes, the default; RUNSET=bigbatch: the same three at batch 4096):
#   paper          --recipe paper: paper T5 (4.74M), full-vocabulary softmax, code-token inputs, batch 1024
#   cpu            --recipe cpu: small T5 (0.47M), constrained objective, pooled item inputs, batch 256
#   paper-levers   --recipe cpu --preset paper: the paper T5 with the constrained objective and pooled inputs
#
# Writes OUT/summary.json (and a table on stdout), OUT/<run>.log, OUT/runs.tgz.part* (run folders
# without optimizer checkpoints: best/ weights, tokenizer, config, metrics, eval results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: gpu_instruments.sh OUT [BUDGET_MINUTES]}
BUDGET=${2:-5}
RUNS=${RUNS_DIR:-/tmp/gpu-runs}
export GENREC_CACHE=${GENREC_CACHE:-/tmp/genrec-cache} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT" "$RUNS"
PY=${PYTHON:-python3}
# scripts/evaluate.sh calls `python`; some GPU images only have python3
if ! command -v python >/dev/null; then mkdir -p /tmp/pybin && ln -sf "$(command -v "$PY")" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH; fi

declare -A FLAGS
case ${RUNSET:-recipes} in
  recipes)  # each recipe as published / as the CPU ladder chose it
    FLAGS=([paper]="--recipe paper --micro-batch-size 1024" [cpu]="--recipe cpu"
           [paper-levers]="--recipe cpu --preset paper")
    NAMES=(paper cpu paper-levers) ;;
  bigbatch)  # the same recipes at batch 4096: a small model's GPU step costs about the same at any
             # batch size (9.2 steps/s at 1024 against 9.4 at 256), so 4x the batch is ~4x the epochs
             # per wall-minute; the learning rate grows with the square root of the batch
    FLAGS=([paper-b4096]="--recipe paper --batch-size 4096 --micro-batch-size 4096 --lr 1e-3"
           [cpu-b4096]="--recipe cpu --batch-size 4096 --micro-batch-size 4096 --lr 6e-3"
           [paper-levers-b4096]="--recipe cpu --preset paper --batch-size 4096 --micro-batch-size 4096 --lr 3e-3")
    NAMES=(paper-b4096 cpu-b4096 paper-levers-b4096) ;;
  *) echo "unknown RUNSET ${RUNSET}; choose recipes or bigbatch"; exit 2 ;;
esac
COMMON="--dataset Instruments --data-root data --output-dir $RUNS --no-progress --eval-batch-size 1024 --warmup-epochs 0.5 ${COMMON_EXTRA:-}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

preflight() {  # 2 optimizer steps, a tiny validation, 64 test users: every code path of the real run
  local name=$1
  $PY -m genrec.finetune ${FLAGS[$name]} $COMMON --run "pre-$name" --max-steps 2 --valid-users 16 --eval-users 16 \
      --overwrite >"$OUT/pre-$name.log" 2>&1 &&
  $PY -m genrec.evaluate --ckpt "$RUNS/pre-$name" --dataset Instruments --task seqrec --max-users 64 --no-progress \
      >>"$OUT/pre-$name.log" 2>&1
}
t0=$(date +%s)
first=${NAMES[0]}
preflight "$first" || { echo "preflight $first failed"; tail -30 "$OUT/pre-$first.log"; exit 1; }  # builds the token cache
pids=()
for name in "${NAMES[@]:1}"; do preflight "$name" & pids+=($!); done
ok=1
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { ok=0; n=${NAMES[$((i + 1))]}; echo "preflight $n failed"; tail -30 "$OUT/pre-$n.log"; }; done
[ "$ok" = 1 ] || exit 1
echo "preflight passed in $(( $(date +%s) - t0 )) s"

run_one() {
  local name=$1
  $PY -m genrec.finetune ${FLAGS[$name]} $COMMON --run "$name" --time-budget-minutes "$BUDGET" --budget-clock wall \
      --anneal-minutes "$BUDGET" --scheduler cosine --overwrite ${EXTRA:-} >"$OUT/$name.log" 2>&1 &&
  bash scripts/evaluate.sh "$RUNS/$name" Instruments --no-progress ${EVAL_EXTRA:-} >>"$OUT/$name.log" 2>&1
}
pids=()
for name in "${NAMES[@]}"; do run_one "$name" & pids+=($!); done
# a lease ends hard: stop whatever still runs DEADLINE seconds after the start, so the results so far come back
( sleep $(( ${DEADLINE:-540} - ($(date +%s) - t0) )); echo "deadline: stopping what still runs";
  pkill -f 'genrec[./](evaluate|fusion|finetune)' ) & watchdog=$!
for i in "${!pids[@]}"; do wait "${pids[$i]}" || echo "run ${NAMES[$i]} failed or was stopped (see logs/${NAMES[$i]}.log)"; done
pkill -P "$watchdog" 2>/dev/null; kill "$watchdog" 2>/dev/null
echo "runs finished $(( $(date +%s) - t0 )) s after the start"

$PY benchmarks/run_summary.py "$OUT/summary.json" Instruments "${NAMES[@]/#/$RUNS/}"
mkdir -p "$RUNS/logs" && mv "$OUT"/*.log "$RUNS/logs/"  # at most 8 files come back from a lease
tar -C "$RUNS" --exclude='checkpoint-*' --exclude='last' --exclude='*.predictions.jsonl' -czf /tmp/runs.tgz "${NAMES[@]}" logs 2>/dev/null
split -b 15m /tmp/runs.tgz "$OUT/runs.tgz.part"
ls -la "$OUT"
