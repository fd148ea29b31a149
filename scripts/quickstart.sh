#!/usr/bin/env bash
# The main job end to end on the embedded synthetic data: no download, a few minutes on 2 CPU cores.
#
#   bash scripts/quickstart.sh            # everything under data/ and log/quickstart*
#
# Two synthetic domains stand in for the paper's setting: SyntheticPre is the pretraining domain,
# Synthetic the target. Text embeddings come from the real all-MiniLM-L6-v2 encoder on the item
# titles; image embeddings are synthetic (no image encoder weights ship offline).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_ROOT="${DATA_ROOT:-data}"
RUN="${RUN:-log/quickstart}"
PY="${PYTHON:-python}"
# Small models on a shared 2-core machine run fastest with one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$SECONDS
step() { echo; echo "== [$((SECONDS - start))s] $*"; }

step "1/8 synthetic datasets (target Synthetic, pretraining domain SyntheticPre)"
# 800 users x 160 items per domain: small enough that a short run learns the item-to-item structure.
for spec in Synthetic:0 SyntheticPre:1; do
    ds=${spec%%:*}
    [[ -f "$DATA_ROOT/$ds/$ds.inter.json" ]] || \
        "$PY" -m genrec.data synthetic --out "$DATA_ROOT" --name "$ds" --seed "${spec##*:}" --num-users 800 --num-items 160
done
"$PY" -m genrec.data stats --data-root "$DATA_ROOT" --dataset Synthetic

step "2/8 text embeddings with all-MiniLM-L6-v2 (offline)"
for ds in Synthetic SyntheticPre; do
    [[ -f "$DATA_ROOT/$ds/$ds.emb-all-MiniLM-L6-v2.npy" ]] || \
        "$PY" -m index.embed text --data-root "$DATA_ROOT" --dataset "$ds" --threads 1 --no-progress
done

step "3/8 one text and one image RQ-VAE shared by both domains"
DATASETS=Synthetic,SyntheticPre DATA_ROOT="$DATA_ROOT" TEXT_EMB=all-MiniLM-L6-v2 IMAGE_EMB=synthetic-image \
    EPOCHS="${INDEX_EPOCHS:-30}" BATCH_SIZE=64 EVAL_EVERY=10 THREADS=1 \
    EXTRA_ARGS="--no-progress --overwrite --codebook-size 16 --hidden-dims 256,128,64 --code-dim 16" bash scripts/run.sh

step "4/8 unique semantic IDs for every item"
DATASETS=Synthetic,SyntheticPre DATA_ROOT="$DATA_ROOT" THREADS=1 bash scripts/gen_codes.sh

step "5/8 pretrain the generator on SyntheticPre (seqrec + seqimage)"
"$PY" genrec/pretrain.py --datasets SyntheticPre --data-root "$DATA_ROOT" --tasks seqrec,seqimage \
    --preset small --epochs "${PRETRAIN_EPOCHS:-2}" --batch-size 128 --micro-batch-size 128 --lr 5e-3 \
    --scheduler constant --warmup-ratio 0.05 --select-metric valid_loss --num-threads 1 --no-progress \
    --overwrite --output-dir "$(dirname "$RUN")" --run "$(basename "$RUN")-pretrain"

step "6/8 finetune on Synthetic with five tasks, selecting on validation NDCG@10"
"$PY" genrec/finetune.py --dataset Synthetic --data-root "$DATA_ROOT" \
    --tasks seqrec,seqimage,item2image,image2item,fusionseqrec --init "$RUN-pretrain" \
    --epochs "${FINETUNE_EPOCHS:-8}" --batch-size 128 --micro-batch-size 128 --lr 5e-3 --scheduler cosine \
    --warmup-ratio 0.05 --select-metric ndcg@10 --eval-users 200 --eval-every-epochs 2 --patience 3 --num-threads 1 --no-progress \
    --overwrite --output-dir "$(dirname "$RUN")" --run "$(basename "$RUN")"

step "7/8 evaluation: text, image and fused, full ranking over all test users"
bash scripts/evaluate.sh "$RUN" Synthetic --data-root "$DATA_ROOT" --no-progress

step "8/8 a recommendation for user 0"
history=$("$PY" -c "import json,sys; s=json.load(open(sys.argv[1]))['0']; print(' '.join(map(str, s[:-1])))" \
    "$DATA_ROOT/Synthetic/Synthetic.inter.json")
"$PY" -m genrec.recommend --ckpt "$RUN" --dataset Synthetic --data-root "$DATA_ROOT" --history $history --topk 5 --task fused

echo
echo "== results on Synthetic (test split, full ranking) after $((SECONDS - start))s"
"$PY" -m genrec.report --ckpt "$RUN" --dataset Synthetic --data-root "$DATA_ROOT"
