#!/usr/bin/env bash
# Multi-task T5 pretraining from a named recipe (genrec/configs/*.toml; flags given here override it).
#
#   default: --recipe cpu, the recipe that learned fastest per CPU-minute (benchmarks/results/convergence.md)
#   --recipe paper (or RECIPE=paper): MQL4GRec's published hyperparameters, for a GPU
#
#   scripts/pretrain.sh --datasets Office,Beauty --run pretrain-ob
#   LAUNCH="accelerate launch --num_processes 4" scripts/pretrain.sh --datasets Scientific,Office,Beauty
#   scripts/pretrain.sh --quick            # synthetic default dataset, tiny model, about a minute on a CPU
#
# The paper recipe: tasks seqrec,seqimage (datasets without image codes train seqrec only), lr 1e-3,
# weight decay 0.01, 30 epochs, effective batch 8192 (micro-batches of 256 per process, the rest by
# exact gradient accumulation), one-epoch warmup then constant, best checkpoint by validation loss.
set -euo pipefail
cd "$(dirname "$0")/.."
LAUNCH=${LAUNCH:-python}

source scripts/common.sh
parse_quick "$@"

if [ "$quick" = 1 ]; then
  prepare_synthetic
  exec $LAUNCH genrec/pretrain.py --quick --data-root data --tasks seqrec,seqimage ${args[@]+"${args[@]}"}
fi

exec $LAUNCH genrec/pretrain.py --datasets "${DATASETS:-Office,Beauty}" --recipe "${RECIPE:-cpu}" ${args[@]+"${args[@]}"}
