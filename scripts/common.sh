# Shared by scripts/pretrain.sh and scripts/finetune.sh (sourced, not run).

# The embedded default dataset and its codes (a quick residual k-means quantizer per modality).
prepare_synthetic() {
  [ -f data/Synthetic/Synthetic.inter.json ] || python -m genrec.data synthetic --out data
  local mod file
  for mod in text image; do
    if [ "$mod" = text ]; then file=data/Synthetic/Synthetic.index_lemb.json; else file=data/Synthetic/Synthetic.index_vitemb.json; fi
    if [ ! -f "$file" ]; then
      python -m index.train --data-root data --dataset Synthetic --embedding "synthetic-$mod" --modality "$mod" \
        --kind rqkmeans --codebook-size 32 --threads 1 --no-progress --overwrite --run-dir "log/index/Synthetic-$mod-quick"
      python -m index.generate_codes --data-root data --dataset Synthetic --ckpt "log/index/Synthetic-$mod-quick/best"
    fi
  done
}

# Splits "$@" into quick=0|1 and the array args (everything but --quick).
parse_quick() {
  quick=0
  args=()
  local a
  for a in "$@"; do
    if [ "$a" = "--quick" ]; then quick=1; else args+=("$a"); fi
  done
}
