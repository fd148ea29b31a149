"""Re-preparing a dataset folder: refused without --overwrite; with it, derived files are deleted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrec.data.__main__ import main as data_main

SMALL = ["--num-users", "30", "--num-items", "24", "--num-topics", "4"]


def _add_derived(dir: Path, name: str) -> list[Path]:
    paths = [dir / f"{name}.index_lemb.json", dir / f"{name}.index.rqvae.json", dir / f"{name}.emb-minilm.npy",
             dir / f"{name}.emb-clip.mask.npy"]
    for p in paths:
        if p.suffix == ".npy":
            np.save(p, np.zeros(3))
        else:
            p.write_text("{}")
    return paths


def test_synthetic_refuses_then_overwrites_and_deletes_derived(tmp_path, caplog):
    out = tmp_path / "data"
    assert data_main(["synthetic", "--out", str(out)] + SMALL) == 0
    dir = out / "Synthetic"
    derived = _add_derived(dir, "Synthetic")
    before = (dir / "Synthetic.inter.json").read_text()
    assert data_main(["synthetic", "--out", str(out), "--seed", "5"] + SMALL) == 2
    assert "--overwrite" in caplog.text
    assert (dir / "Synthetic.inter.json").read_text() == before and all(p.exists() for p in derived)
    caplog.clear()
    assert data_main(["synthetic", "--out", str(out), "--seed", "5", "--overwrite"] + SMALL) == 0
    assert (dir / "Synthetic.inter.json").read_text() != before
    assert not any(p.exists() for p in derived)
    for p in derived:
        assert p.name in caplog.text
    # the synthetic embeddings themselves are rewritten from the new data
    assert (dir / "Synthetic.emb-synthetic-text.npy").is_file()


def test_p5_prepare_refuses_then_overwrites(tmp_path, caplog):
    src = tmp_path / "p5"
    src.mkdir()
    (src / "user_sequence.txt").write_text("u1 a b c\nu2 b c d\n")
    args = ["prepare", "--p5", str(src), "--dataset", "Toy", "--out", str(tmp_path / "data")]
    assert data_main(args) == 0
    dir = tmp_path / "data" / "Toy"
    derived = _add_derived(dir, "Toy")
    (src / "user_sequence.txt").write_text("u1 d c b\nu2 a b c\n")
    assert data_main(args) == 2
    assert json.loads((dir / "Toy.inter.json").read_text())["0"] == [0, 1, 2]
    assert all(p.exists() for p in derived)
    assert data_main(args + ["--overwrite"]) == 0
    assert not any(p.exists() for p in derived)
    assert "Toy.index_lemb.json" in caplog.text


def test_amazon_prepare_refuses_an_existing_dataset(tmp_path, caplog):
    import gzip

    reviews = tmp_path / "r.json.gz"
    with gzip.open(reviews, "wt") as f:
        for u in ("u1", "u2", "u3"):
            for t, a in enumerate("ABC"):
                f.write(json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t}) + "\n")
    args = ["prepare", "--reviews", str(reviews), "--dataset", "Toy", "--out", str(tmp_path / "data"), "--k-core", "3"]
    assert data_main(args) == 0
    derived = _add_derived(tmp_path / "data" / "Toy", "Toy")
    assert data_main(args) == 2 and all(p.exists() for p in derived)
    assert data_main(args + ["--overwrite"]) == 0 and not any(p.exists() for p in derived)
