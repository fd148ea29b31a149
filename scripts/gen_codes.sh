#!/usr/bin/env bash
# Export unique semantic IDs (<ds>.index_lemb.json, <ds>.index_vitemb.json) from the quantizers
# that scripts/run.sh trained.
#
#   bash scripts/gen_codes.sh [DATASETS] [DATA_ROOT]
#
# Environment (all optional):
#   DATASETS, DATA_ROOT   as the arguments (default Synthetic under data/, created if missing)
#   MODALITIES            "text image" (default) or a subset; a modality without a trained
#                         checkpoint is skipped with a note
#   KIND                  rqvae (default) or rqkmeans: which run of scripts/run.sh to export
#   CKPT_TEXT, CKPT_IMAGE explicit checkpoint folders (default log/index/<datasets>-<modality>-<kind>/best)
#   POLICY                assign (default: unique 4-token codes) or dedup-token (TIGER's 5th token)
#   SCOPE                 all (unique across all listed datasets, default) or dataset
#   OUT                   write code files here instead of each dataset's folder
#   DEVICE, THREADS, EXTRA_ARGS
set -euo pipefail
cd "$(dirname "$0")/.."

DATASETS="${1:-${DATASETS:-Synthetic}}"
DATA_ROOT="${2:-${DATA_ROOT:-data}}"
KIND="${KIND:-rqvae}"
MODALITIES="${MODALITIES:-text image}"
PY="${PYTHON:-python}"

if [[ "$DATASETS" == "Synthetic" ]]; then
    THREADS="${THREADS:-1}"
fi
if [[ "$DATASETS" == "Synthetic" && ! -d "$DATA_ROOT/Synthetic" ]]; then
    echo "== creating the synthetic dataset under $DATA_ROOT"
    "$PY" -m genrec.data synthetic --out "$DATA_ROOT"
fi

args=(--data-root "$DATA_ROOT" --datasets "$DATASETS" --kind "$KIND")
[[ -n "${POLICY:-}" ]] && args+=(--policy "$POLICY")
[[ -n "${SCOPE:-}" ]] && args+=(--scope "$SCOPE")
[[ -n "${OUT:-}" ]] && args+=(--out "$OUT")
[[ -n "${DEVICE:-}" ]] && args+=(--device "$DEVICE")
[[ -n "${THREADS:-}" ]] && args+=(--threads "$THREADS")
# shellcheck disable=SC2206
extra=(${EXTRA_ARGS:-})

exported=0
for modality in $MODALITIES; do
    case "$modality" in
        text) ckpt="${CKPT_TEXT:-}" ;;
        image) ckpt="${CKPT_IMAGE:-}" ;;
        *) echo "unknown modality '$modality' (expected text or image)" >&2; exit 2 ;;
    esac
    ckpt="${ckpt:-log/index/${DATASETS//,/+}-$modality-$KIND/best}"
    if [[ ! -f "$ckpt/config.json" ]]; then
        echo "== skipping $modality: no checkpoint at $ckpt (train it with scripts/run.sh)"
        continue
    fi
    echo "== exporting $modality codes for $DATASETS from $ckpt"
    "$PY" -m index.generate_codes "${args[@]}" --modality "$modality" --ckpt "$ckpt" "${extra[@]}"
    exported=$((exported + 1))
done
if [[ "$exported" -eq 0 ]]; then
    echo "no codes exported: no trained checkpoint found (run scripts/run.sh first)" >&2
    exit 2
fi
