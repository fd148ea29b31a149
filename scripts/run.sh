#!/usr/bin/env bash
# Train the semantic-ID quantizers: one for text, one for image embeddings.
#
#   bash scripts/run.sh [DATASETS] [DATA_ROOT]
#
# DATASETS is one name or a comma list (A,B,C = one shared quantizer per modality trained on all
# of them). With no arguments: the embedded Synthetic dataset under data/ (created if missing),
# with a short schedule that finishes in a minute or two on 2 CPU cores.
#
# Environment (all optional):
#   DATASETS, DATA_ROOT        as the arguments (arguments win)
#   TEXT_EMB, IMAGE_EMB        embedding names (<ds>.emb-NAME.npy); an empty IMAGE_EMB skips image
#                              (defaults: synthetic-text/-image for Synthetic, all-MiniLM-L6-v2/none otherwise)
#   MODALITIES                 "text image" (default) or a subset
#   KIND                       rqvae (default) or rqkmeans
#   SCHEDULE                   auto (default), cpu or paper: the named schedule of index.train --schedule.
#                              auto = cpu on a machine without a GPU (40 epochs of 256, 5 auto-encoder
#                              warm-up epochs, cosine lr; about 10-16 min for 12k items on 2 cores),
#                              paper with one (the published 500 epochs of 2048, constant lr; about
#                              2 h 40 min on 2 CPU cores). The log's first line names the one that runs.
#   EPOCHS, BATCH_SIZE, EVAL_EVERY, AE_WARMUP, SCHEDULER, DEVICE, THREADS
#                              overrides on top of the schedule (Synthetic gets a short one: 40 epochs
#                              of 64, 10 auto-encoder warm-up epochs, cosine decay, 1 thread)
#   EXTRA_ARGS                 more flags for python -m index.train (e.g. "--lr 5e-4 --levels 3")
set -euo pipefail
cd "$(dirname "$0")/.."

DATASETS="${1:-${DATASETS:-Synthetic}}"
DATA_ROOT="${2:-${DATA_ROOT:-data}}"
KIND="${KIND:-rqvae}"
MODALITIES="${MODALITIES:-text image}"
PY="${PYTHON:-python}"

if [[ "$DATASETS" == "Synthetic" ]]; then
    TEXT_EMB="${TEXT_EMB-synthetic-text}"
    IMAGE_EMB="${IMAGE_EMB-synthetic-image}"
    EPOCHS="${EPOCHS:-40}"
    BATCH_SIZE="${BATCH_SIZE:-64}"
    EVAL_EVERY="${EVAL_EVERY:-10}"
    AE_WARMUP="${AE_WARMUP:-10}"
    SCHEDULER="${SCHEDULER:-cosine}"
    THREADS="${THREADS:-1}"  # tiny tensors: one thread avoids hand-off stalls on a busy machine
    if [[ ! -d "$DATA_ROOT/Synthetic" ]]; then
        echo "== creating the synthetic dataset under $DATA_ROOT"
        "$PY" -m genrec.data synthetic --out "$DATA_ROOT"
    fi
else
    TEXT_EMB="${TEXT_EMB-all-MiniLM-L6-v2}"
    IMAGE_EMB="${IMAGE_EMB-}"
fi

args=(--data-root "$DATA_ROOT" --datasets "$DATASETS" --kind "$KIND" --schedule "${SCHEDULE:-auto}")
[[ -n "${EPOCHS:-}" ]] && args+=(--epochs "$EPOCHS")
[[ -n "${BATCH_SIZE:-}" ]] && args+=(--batch-size "$BATCH_SIZE")
[[ -n "${EVAL_EVERY:-}" ]] && args+=(--eval-every "$EVAL_EVERY")
[[ -n "${AE_WARMUP:-}" ]] && args+=(--ae-warmup-epochs "$AE_WARMUP")
[[ -n "${SCHEDULER:-}" ]] && args+=(--scheduler "$SCHEDULER")
[[ -n "${DEVICE:-}" ]] && args+=(--device "$DEVICE")
[[ -n "${THREADS:-}" ]] && args+=(--threads "$THREADS")
# shellcheck disable=SC2206
extra=(${EXTRA_ARGS:-})

for modality in $MODALITIES; do
    case "$modality" in
        text) emb="$TEXT_EMB" ;;
        image) emb="$IMAGE_EMB" ;;
        *) echo "unknown modality '$modality' (expected text or image)" >&2; exit 2 ;;
    esac
    if [[ -z "$emb" ]]; then
        echo "== skipping $modality: no embedding name (set ${modality^^}_EMB=<name> for <ds>.emb-<name>.npy)"
        continue
    fi
    echo "== training the $modality quantizer ($KIND) on $DATASETS with embeddings '$emb'"
    "$PY" -m index.train "${args[@]}" --modality "$modality" --embedding "$emb" "${extra[@]}"
done
