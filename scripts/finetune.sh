#!/usr/bin/env bash
# Multi-task T5 finetuning with MQL4GRec's hyperparameters (flags given here override them).
#
#   scripts/finetune.sh --dataset Instruments --init log/<pretrain run> --run ft-instruments
#   scripts/finetune.sh --dataset Instruments --time-budget-minutes 15     # bounded CPU run
#   LAUNCH="accelerate launch --num_processes 4" scripts/finetune.sh --dataset Instruments
#   scripts/finetune.sh --quick            # synthetic default dataset, tiny model, about a minute on a CPU
#
# The paper recipe: tasks seqrec,seqimage,item2image,image2item,fusionseqrec, lr 5e-4, up to 200 epochs,
# cosine schedule with warmup ratio 0.01, weight decay 0.01, early stopping with patience 10,
# best checkpoint by validation NDCG@10 (on 1000 validation users; validation loss when the
# evaluator is unavailable). The effective batch (1024) is our choice; the paper does not state it.
set -euo pipefail
cd "$(dirname "$0")/.."
LAUNCH=${LAUNCH:-python}

source scripts/common.sh
parse_quick "$@"

if [ "$quick" = 1 ]; then
  prepare_synthetic
  exec $LAUNCH genrec/finetune.py --quick --data-root data ${args[@]+"${args[@]}"}
fi

exec $LAUNCH genrec/finetune.py --dataset "${DATASET:-Instruments}" --recipe "${RECIPE:-cpu}" ${args[@]+"${args[@]}"}
