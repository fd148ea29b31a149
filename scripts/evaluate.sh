#!/usr/bin/env bash
# Text, image and fused evaluation of a finetuned run (full ranking over all test users).
#
#   scripts/evaluate.sh [RUN_DIR] [DATASET] [extra genrec.evaluate flags...]
#   scripts/evaluate.sh log/quickstart Synthetic
#   scripts/evaluate.sh log/finetune-Instruments Instruments --beams 20 --threads 2
#
# Defaults: RUN_DIR=log/quickstart, DATASET=Synthetic (the embedded default dataset).
# Environment: SPLIT (test|valid, default test), RULE (auto|prob|rawprob|rrf|published, default auto: rawprob for constrained-objective runs, else prob),
# LAUNCH (a launcher prefix, e.g. "accelerate launch --multi_gpu --num_processes 2 --num_machines 1
# --mixed_precision no --dynamo_backend no"; default: plain python).
# Results: RUN_DIR/eval/<dataset>-{seqrec,seqimage,fused}-<split>.metrics.json (+ predictions);
# with --max-users N / --checkpoint C the names gain -Nusers-seedS / -C (genrec.evaluate.result_stem).
set -euo pipefail

RUN_DIR="${1:-log/quickstart}"
DATASET="${2:-Synthetic}"
shift $(( $# > 2 ? 2 : $# ))
SPLIT="${SPLIT:-test}"
RULE="${RULE:-auto}"

if [[ ! -d "$RUN_DIR" ]]; then
    echo "scripts/evaluate.sh: error: run folder $RUN_DIR not found (train one first, e.g. python -m genrec.finetune)" >&2
    exit 2
fi

if [[ -n "${LAUNCH:-}" ]]; then
    read -r -a runner <<< "$LAUNCH"
    runner+=(-m genrec.evaluate)
else
    runner=(python -m genrec.evaluate)
fi

for task in seqrec seqimage; do
    echo "== $DATASET $task ($SPLIT) =="
    "${runner[@]}" --ckpt "$RUN_DIR" --dataset "$DATASET" --task "$task" --split "$SPLIT" "$@"
done

# the flags that name evaluation files (genrec.evaluate.result_stem) go to fusion too
fusion_args=()
while (( $# )); do
    case "$1" in
        --max-users|--seed|--checkpoint) fusion_args+=("$1" "${2:-}"); shift $(( $# > 1 ? 2 : 1 )) ;;
        --max-users=*|--seed=*|--checkpoint=*) fusion_args+=("$1"); shift ;;
        *) shift ;;
    esac
done

echo "== $DATASET late fusion ($RULE) =="
python -m genrec.fusion --ckpt "$RUN_DIR" --dataset "$DATASET" --split "$SPLIT" --rule "$RULE" ${fusion_args[@]+"${fusion_args[@]}"}
