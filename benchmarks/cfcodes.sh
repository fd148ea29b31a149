#!/usr/bin/env bash
# Collaborative semantic IDs for one dataset: a SASRec's item table, quantized like a text embedding.
#
#   bash benchmarks/cfcodes.sh DATASET WORK [SASREC_CPU_MINUTES]
#   bash benchmarks/cfcodes.sh Scientific log/cf 8
#
# Steps (each resumes or is skipped when its output exists; one thread each):
#   1. SASRec on the dataset's training split (leave-one-out: the validation and test items of a user
#      are never trained on), SASREC_CPU_MINUTES of CPU time (default 8), best checkpoint by validation
#   2. its item table -> WORK/data/DATASET/DATASET.emb-sasrec.npy   (python -m genrec.baselines embeddings)
#   3. an RQ-VAE over it, the CPU schedule                          (python -m index.train --embedding sasrec)
#   4. unique codes -> WORK/data/DATASET/DATASET.index_lemb.json    (python -m index.generate_codes)
# MODALITY=image exports them as image codes (<A_i>..., DATASET.index_vitemb.json) instead: a second view
# of the items beside their own text codes.
# The dataset's interactions are linked from data/ (or ../shared/data; SOURCE_ROOT overrides) into WORK/data, never copied.
# INDEX_ARGS: more index.train flags (a small catalogue needs --codebook-size below its item count).
# Prints the code file; hand it to the generator with --text-codes (convergence.py: --text-codes DS=FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
DS=${1:?usage: cfcodes.sh DATASET WORK [SASREC_CPU_MINUTES]}
WORK=${2:?usage: cfcodes.sh DATASET WORK [SASREC_CPU_MINUTES]}
MINUTES=${3:-8}
PY=${PYTHON:-python}
for root in ${SOURCE_ROOT:-data ../shared/data}; do
  if [ -f "$root/$DS/$DS.inter.json" ]; then SRC=$(cd "$root/$DS" && pwd); break; fi
done
[ -n "${SRC:-}" ] || { echo "cfcodes.sh: error: no $DS/$DS.inter.json under data/ or ../shared/data" >&2; exit 2; }
mkdir -p "$WORK/data/$DS"
WORK=$(cd "$WORK" && pwd)
for f in "$SRC/$DS".inter.json "$SRC/$DS".item.json "$SRC/$DS".item2id "$SRC/$DS".user2id "$SRC/$DS".time.json; do
  [ -e "$f" ] && ln -sf "$f" "$WORK/data/$DS/"
done
MODALITY=${MODALITY:-text}
case "$MODALITY" in
  text) CODES="$WORK/data/$DS/$DS.index_lemb.json" ;;
  image) CODES="$WORK/data/$DS/$DS.index_vitemb.json" ;;
  *) echo "cfcodes.sh: error: MODALITY must be text or image, not '$MODALITY'" >&2; exit 2 ;;
esac

echo "== 1. SASRec on $DS ($MINUTES CPU-minutes)"
$PY -m genrec.baselines train --model sasrec --dataset "$DS" --data-root "$WORK/data" --output-dir "$WORK/sasrec-$DS" \
    --time-budget-minutes "$MINUTES" --budget-clock cpu --num-threads 1
echo "== 2. its item table"
$PY -m genrec.baselines embeddings --run "$WORK/sasrec-$DS" --dataset "$DS" --data-root "$WORK/data" --name sasrec
echo "== 3. RQ-VAE over the item table"
$PY -m index.train --data-root "$WORK/data" --datasets "$DS" --modality "$MODALITY" --embedding sasrec --schedule cpu \
    --num-threads 1 --run-dir "$WORK/index-$DS-$MODALITY" --no-progress \
    $( [ -e "$WORK/index-$DS-$MODALITY/last" ] && echo --resume ) ${INDEX_ARGS:-}
echo "== 4. unique codes"
$PY -m index.generate_codes --data-root "$WORK/data" --datasets "$DS" --modality "$MODALITY" --embedding sasrec \
    --ckpt "$WORK/index-$DS-$MODALITY/best" --out "$WORK/data/$DS"
echo "$CODES"
