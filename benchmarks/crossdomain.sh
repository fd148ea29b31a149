#!/usr/bin/env bash
# Cross-domain pretraining, measured (issue 11, item 4): one text quantizer shared by Office,
# Scientific and Beauty; the generator pretrained on Scientific+Beauty, finetuned on Office,
# against Office trained from scratch on the same codes with the same finetune budgets.
#
#   bash benchmarks/crossdomain.sh WORK        # WORK: a writable folder (data links, runs)
#
# Every step skips what it already finished, so a stopped run continues where it was. One thread
# per process, so two of these (or one plus another benchmark) fit a 2-core machine.
set -euo pipefail
WORK=${1:?usage: bash benchmarks/crossdomain.sh WORK}
SHARED=${SHARED:-../shared/data}
PRETRAIN_MINUTES=${PRETRAIN_MINUTES:-20}
BUDGETS=${BUDGETS:-8 30}
export OMP_NUM_THREADS=1

# data: links to the shared files (never copied), item names for Beauty, MiniLM text embeddings
for ds in Office Scientific Beauty; do
  mkdir -p "$WORK/$ds"
  for f in "$SHARED/$ds"/*; do ln -sfn "$(realpath "$f")" "$WORK/$ds/"; done
done
[ -f "$WORK/Beauty/Beauty.item.json" ] || python -m genrec.data titles --data-root "$WORK" --dataset Beauty
for ds in Office Scientific Beauty; do
  [ -f "$WORK/$ds/$ds.emb-all-MiniLM-L6-v2.npy" ] || python -m index.embed text --data-root "$WORK" --dataset "$ds"
done

# one shared RQ-VAE (cpu schedule) and unique codes per dataset: <ds>.index_lemb.json
Q="$WORK/index/shared-text"
[ -d "$Q/best" ] || python -m index.train --data-root "$WORK" --datasets Office,Scientific,Beauty --modality text \
  --embedding all-MiniLM-L6-v2 --schedule cpu --threads 1 --run-dir "$Q" --no-progress
[ -f "$WORK/Office/Office.index_lemb.json" ] || python -m index.generate_codes --ckpt "$Q/best" --data-root "$WORK" \
  --datasets Office,Scientific,Beauty --modality text --threads 1 --no-progress

# pretrain on the two other domains (cpu recipe), a CPU-time budget
P="$WORK/runs/pretrain-Scientific-Beauty"
[ -f "$P/best/model.safetensors" ] || python -m genrec.pretrain --recipe cpu --datasets Scientific,Beauty \
  --data-root "$WORK" --tasks seqrec --time-budget-minutes "$PRETRAIN_MINUTES" --budget-clock cpu --num-threads 1 \
  --output-dir "$WORK/runs" --run pretrain-Scientific-Beauty --no-progress

# finetune on Office from it, and from scratch, same codes, same budgets
python benchmarks/convergence.py --datasets Office --data-root "$WORK" --threads 1 --budgets $BUDGETS \
  --models genrec+constrained+pooled genrec+constrained+pooled+pretrain --pretrained Office="$P" \
  --text-codes Office="$WORK/Office/Office.index_lemb.json" --runs "$WORK/runs/convergence" \
  --out benchmarks/results/crossdomain
