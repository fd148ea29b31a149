"""benchmarks/cfcodes.sh: a SASRec's item table becomes unique semantic IDs the generator reads."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("modality,stem,letter", [("text", "index_lemb", "a"), ("image", "index_vitemb", "A")])
def test_cfcodes_turns_a_trained_sasrec_into_unique_codes(synthetic_root, tmp_path, modality, stem, letter):
    env = dict(os.environ, SOURCE_ROOT=str(synthetic_root), OMP_NUM_THREADS="1", MODALITY=modality,
               INDEX_ARGS="--codebook-size 8 --epochs 6 --ae-warmup-epochs 1")
    proc = subprocess.run(["bash", "benchmarks/cfcodes.sh", "Synthetic", str(tmp_path / "cf"), "0.02"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    codes_file = Path(proc.stdout.strip().splitlines()[-1])
    assert codes_file == tmp_path / "cf" / "data" / "Synthetic" / f"Synthetic.{stem}.json"
    codes = json.loads(codes_file.read_text())
    n_items = len(json.loads((synthetic_root / "Synthetic" / "Synthetic.item.json").read_text()))
    assert len(codes) == n_items
    assert len({tuple(c) for c in codes.values()}) == n_items  # every item its own code
    assert all(c[0].startswith(f"<{letter}_") for c in codes.values())
    emb = tmp_path / "cf" / "data" / "Synthetic" / "Synthetic.emb-sasrec.npy"
    import numpy as np

    assert np.load(emb).shape[0] == n_items
    # the interactions were linked, not copied
    assert (tmp_path / "cf" / "data" / "Synthetic" / "Synthetic.inter.json").is_symlink()
    from genrec.data import load_dataset

    ds = load_dataset(tmp_path / "cf" / "data", "Synthetic", **{f"{modality}_codes": str(codes_file)})
    assert ds.num_items == n_items
