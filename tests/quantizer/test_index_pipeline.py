"""End to end on tiny data: train -> export, resume, multi-dataset splitting, and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genrec.data import load_codes, load_dataset
from genrec.data.codes import load_code_spec
from genrec.data.synthetic import generate_synthetic
from index import generate_codes, train
from index.collisions import POLICIES
from index.config import DISTANCE_NAMES, QUANTIZER_KINDS

TINY = ["--hidden-dims", "32,16", "--code-dim", "8", "--levels", "3", "--codebook-size", "8",
        "--batch-size", "16", "--eval-every", "1", "--kmeans-iters", "10", "--threads", "1", "--no-progress",
        "--schedule", "paper"]  # the tests below were written against the paper defaults (no AE warm-up)




def run_train(root: Path, run_dir: Path, *extra: str, dataset: str = "Synthetic", modality: str = "text",
              embedding: str = "synthetic-text") -> int:
    return train.main(["--data-root", str(root), "--dataset", dataset, "--embedding", embedding,
                       "--modality", modality, "--run-dir", str(run_dir), *TINY, *extra])


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def test_train_and_export_end_to_end(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_train(synthetic_root, run, "--epochs", "3") == 0
    for name in ("metrics.jsonl", "codebook_usage.png", "summary.json", "best/model.safetensors",
                 "best/config.json", "last/optimizer.safetensors", "last/trainer_state.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["type"] == "eval"]  # the end record closes the log
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert {"val_recon", "utilisation", "perplexity", "collision_rate", "train_loss"} <= set(rows[-1])
    assert (run / "codebook_usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["config"]["quantizer"]["levels"] == 3 and config["modality"] == "text"

    out = tmp_path / "codes"
    assert generate_codes.main(["--ckpt", str(run / "best"), "--data-root", str(synthetic_root),
                                "--out", str(out), "--threads", "1"]) == 0
    codes = load_codes(out / "Synthetic.index_lemb.json", 64)
    assert len(set(codes)) == 64 and all(len(c) == 3 and c[0].startswith("<a_") for c in codes)
    report = json.loads((out / "Synthetic.lemb-report.json").read_text())
    assert report["after"]["duplicate_items"] == 0
    assert report["per_dataset"]["Synthetic"]["items"] == 64
    assert len(report["before"]["utilisation"]) == 3
    # the exported files load as the dataset's codes
    ds = load_dataset(synthetic_root, "Synthetic", text_codes=out / "Synthetic.index_lemb.json")
    assert ds.codes("text") == codes

    # image modality uses upper-case tokens; dedup-token appends a 4th token only if needed
    irun = tmp_path / "irun"
    assert run_train(synthetic_root, irun, "--epochs", "1", modality="image", embedding="synthetic-image") == 0
    assert generate_codes.main(["--ckpt", str(irun / "best"), "--data-root", str(synthetic_root),
                                "--out", str(out), "--dedup-token"]) == 0
    icodes = load_codes(out / "Synthetic.index_vitemb.json", 64)
    assert len(set(icodes)) == 64 and icodes[0][0].startswith("<A_")
    # nothing but the final files was left in the output folder
    assert files_under(out) == {"Synthetic.index_lemb.json", "Synthetic.lemb-report.json", "Synthetic.index_lemb.spec.json",
                                "Synthetic.index_vitemb.json", "Synthetic.vitemb-report.json",
                                "Synthetic.index_vitemb.spec.json"}
    # the code spec saved with each code file: the quantizer's levels and size, dedup level only if appended
    spec = load_code_spec(out / "Synthetic.index_lemb.json")
    assert (spec.levels, spec.dedup_tokens) == (3, 0) and spec.codes_per_level == config["config"]["quantizer"]["codebook_size"]
    ispec = load_code_spec(out / "Synthetic.index_vitemb.json")
    assert ispec.dedup_tokens == (max(int(c[-1][3:-1]) for c in icodes) + 1 if len(icodes[0]) > ispec.levels else 0)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("distance", DISTANCE_NAMES)
@pytest.mark.parametrize("kind", QUANTIZER_KINDS)
def test_every_quantizer_distance_and_collision_policy_exports_unique_codes(synthetic_root, tmp_path, kind,
                                                                           distance, policy):
    # follows the registries: a strategy added there is trained and exported here
    assert run_train(synthetic_root, tmp_path / "run", "--kind", kind, "--distance", distance, "--epochs", "2") == 0
    # RQ-KMeans has nothing to optimise: its last checkpoint holds no optimizer state
    assert (tmp_path / "run" / "last" / "optimizer.safetensors").exists() == (kind == "rqvae")
    assert generate_codes.main(["--ckpt", str(tmp_path / "run" / "best"), "--data-root", str(synthetic_root),
                                "--out", str(tmp_path / "out"), "--policy", policy]) == 0
    codes = load_codes(tmp_path / "out" / "Synthetic.index_lemb.json", 64)
    assert len(set(codes)) == 64
    spec = load_code_spec(tmp_path / "out" / "Synthetic.index_lemb.json")
    assert spec.levels == 3 and len(codes[0]) in (3, 4)


@pytest.mark.parametrize("stop,warmup", [(2, 0), (1, 2)])
def test_resume_matches_an_uninterrupted_run(synthetic_root, tmp_path, stop, warmup):
    # RNG-dependent paths (dropout, restarts, a k-means init after the auto-encoder warm-up) must
    # resume exactly
    extra = ["--dead-code-restart", "1", "--dropout", "0.1", "--ae-warmup-epochs", str(warmup)]
    assert run_train(synthetic_root, tmp_path / "a", "--epochs", "4", *extra) == 0
    assert run_train(synthetic_root, tmp_path / "b", "--epochs", str(stop), *extra) == 0
    init = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert run_train(synthetic_root, tmp_path / "b", "--epochs", "4", "--resume", *extra) == 0
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert bool(b["rq.initialised"]) and not torch.equal(init["rq.codebooks.0"], b["rq.codebooks.0"])
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in rows if r["type"] == "eval"]
    assert epochs[-2:] == [3, 4] and epochs == sorted(epochs)


def test_multi_dataset_one_quantizer_codes_split_back(tmp_path):
    root = tmp_path / "data"
    generate_synthetic(root, "Alpha", num_users=40, num_items=24, num_topics=4, seed=1)
    generate_synthetic(root, "Beta", num_users=40, num_items=40, num_topics=4, seed=2)
    shutil.copy(root / "Alpha" / "Alpha.emb-synthetic-text.npy", root / "Beta" / "dup.npy")
    # Beta's first 24 items have exactly Alpha's embeddings: cross-dataset collisions for sure
    emb = np.load(root / "Beta" / "Beta.emb-synthetic-text.npy")
    emb[:24] = np.load(root / "Beta" / "dup.npy")
    np.save(root / "Beta" / "Beta.emb-synthetic-text.npy", emb)
    run = tmp_path / "run"
    assert train.main(["--data-root", str(root), "--datasets", "Alpha,Beta", "--embedding", "synthetic-text",
                       "--run-dir", str(run), "--epochs", "1", *TINY]) == 0
    meta = json.loads((run / "best" / "config.json").read_text())
    assert meta["datasets"] == ["Alpha", "Beta"] and meta["items_per_dataset"] == [24, 40]

    assert generate_codes.main(["--ckpt", str(run / "best"), "--data-root", str(root)]) == 0
    alpha = load_codes(root / "Alpha" / "Alpha.index_lemb.json", 24)
    beta = load_codes(root / "Beta" / "Beta.index_lemb.json", 40)
    assert len(set(alpha) | set(beta)) == 64  # unique across both datasets

    # per-dataset scope: each dataset unique on its own, the shared embeddings may share codes
    assert generate_codes.main(["--ckpt", str(run / "best"), "--data-root", str(root), "--scope", "dataset",
                                "--out", str(tmp_path / "per")]) == 0
    alpha2 = load_codes(tmp_path / "per" / "Alpha.index_lemb.json", 24)
    beta2 = load_codes(tmp_path / "per" / "Beta.index_lemb.json", 40)
    assert len(set(alpha2)) == 24 and len(set(beta2)) == 40
    assert alpha2 == beta2[:24]  # same embeddings, same model, same resolution

    # the split itself: rows go back to the dataset they came from, in order
    from index.data import load_embedding_set

    data = load_embedding_set(root, ["Alpha", "Beta"], "synthetic-text")
    parts = data.split(np.arange(64))
    assert parts["Alpha"].tolist() == list(range(24)) and parts["Beta"].tolist() == list(range(24, 64))
    with pytest.raises(ValueError):
        data.split(np.arange(10))


# -- bad input -------------------------------------------------------------------------------
def copy_synthetic(src_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(src_root / "Synthetic", root / "Synthetic")
    return root


def expect_error(capsys, code: int, *fragments: str) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for f in fragments:
        assert f in err, (f, err)
    return err


def test_nan_and_inf_embeddings_are_refused(synthetic_root, tmp_path, capsys):
    root = copy_synthetic(synthetic_root, tmp_path)
    path = root / "Synthetic" / "Synthetic.emb-synthetic-text.npy"
    emb = np.load(path)
    emb[3, 1] = np.nan
    emb[7, 0] = np.inf
    np.save(path, emb)
    expect_error(capsys, run_train(root, tmp_path / "run", "--epochs", "1"), str(path), "NaN or inf")
    assert not (tmp_path / "run").exists()


def test_more_codes_than_items(synthetic_root, tmp_path, capsys):
    code = train.main(["--data-root", str(synthetic_root), "--dataset", "Synthetic", "--embedding", "synthetic-text",
                       "--run-dir", str(tmp_path / "run"), "--codebook-size", "256", "--no-progress"])
    expect_error(capsys, code, "Synthetic.emb-synthetic-text.npy", "at least as many items as codes")
    assert not (tmp_path / "run").exists()


def test_empty_dataset(tmp_path, capsys):
    ds = tmp_path / "data" / "Empty"
    ds.mkdir(parents=True)
    (ds / "Empty.inter.json").write_text("{}")
    np.save(ds / "Empty.emb-e.npy", np.zeros((0, 8), np.float32))
    code = train.main(["--data-root", str(tmp_path / "data"), "--dataset", "Empty", "--embedding", "e",
                       "--run-dir", str(tmp_path / "run"), "--no-progress"])
    expect_error(capsys, code, "Empty.inter.json", "empty")


def test_missing_embedding_names_the_file(synthetic_root, tmp_path, capsys):
    code = run_train(synthetic_root, tmp_path / "run", embedding="nope")
    expect_error(capsys, code, "Synthetic.emb-nope.npy", "not found", "synthetic-text")


def test_checkpoint_dimension_and_modality_mismatch(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_train(synthetic_root, run, "--epochs", "1") == 0
    capsys.readouterr()
    out = tmp_path / "out"
    # a 48-d image embedding through a 64-d text checkpoint
    code = generate_codes.main(["--ckpt", str(run / "best"), "--data-root", str(synthetic_root),
                                "--embedding", "synthetic-image", "--out", str(out)])
    expect_error(capsys, code, "Synthetic.emb-synthetic-image.npy", "dimension 48", "expects 64")
    # a text checkpoint asked to write image codes
    code = generate_codes.main(["--ckpt", str(run / "best"), "--data-root", str(synthetic_root),
                                "--modality", "image", "--out", str(out)])
    expect_error(capsys, code, str(run / "best"), "text quantizer", "image")
    # resuming a text run as image
    code = run_train(synthetic_root, run, "--epochs", "2", "--resume", modality="image")
    expect_error(capsys, code, "text quantizer")
    # not a checkpoint at all
    code = generate_codes.main(["--ckpt", str(tmp_path), "--data-root", str(synthetic_root), "--out", str(out)])
    expect_error(capsys, code, "not a quantizer checkpoint")
    assert not out.exists()  # nothing half-written


def test_wrong_dimension_between_datasets(tmp_path, capsys):
    root = tmp_path / "data"
    generate_synthetic(root, "Alpha", num_users=30, num_items=24, num_topics=4, seed=1)
    generate_synthetic(root, "Beta", num_users=30, num_items=24, num_topics=4, seed=2, text_dim=32)
    code = train.main(["--data-root", str(root), "--datasets", "Alpha,Beta", "--embedding", "synthetic-text",
                       "--run-dir", str(tmp_path / "run"), *TINY])
    expect_error(capsys, code, "Beta.emb-synthetic-text.npy", "dimension 32")


def test_resume_without_checkpoint(synthetic_root, tmp_path, capsys):
    code = run_train(synthetic_root, tmp_path / "run", "--resume")
    expect_error(capsys, code, "nothing to resume")


def test_masked_missing_rows_are_left_out_of_training(tmp_path):
    """Zero rows written for missing images (with a mask file) must not reach the codebooks."""
    import json

    import numpy as np

    from genrec.data.synthetic import generate_synthetic
    from index.train import main as train_main

    root = tmp_path / "data"
    generate_synthetic(root, "Synthetic", num_users=30, num_items=40, seed=0)
    ds_dir = root / "Synthetic"
    emb = np.load(ds_dir / "Synthetic.emb-synthetic-image.npy")
    mask = np.ones(len(emb), dtype=bool)
    mask[:7] = False
    emb[:7] = 0.0
    np.save(ds_dir / "Synthetic.emb-synthetic-image.npy", emb)
    np.save(ds_dir / "Synthetic.emb-synthetic-image.mask.npy", mask)
    run = tmp_path / "run"
    rc = train_main(["--data-root", str(root), "--dataset", "Synthetic", "--embedding", "synthetic-image",
                     "--modality", "image", "--kind", "rqkmeans", "--codebook-size", "4", "--threads", "1",
                     "--no-progress", "--run-dir", str(run)])
    assert rc == 0
    meta = json.loads((run / "best" / "config.json").read_text())
    split = meta.get("split") or meta["meta"]["split"]
    assert split["train"] + split["holdout"] == 33
