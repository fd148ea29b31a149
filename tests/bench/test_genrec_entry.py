"""The generator as a results-benchmark row: trains, decodes text and image, fuses, reports."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

import benchmarks.genrec_entry  # noqa: F401  (registers the genrec entry)
from genrec.baselines.registry import MODELS, check_overrides
from genrec.data import codes_to_json, format_code, load_dataset

torch.set_num_threads(1)


def _args(**kw) -> argparse.Namespace:
    base = dict(set=["genrec.preset=tiny", "genrec.eval_users=16", "genrec.beams=5", "genrec.batch_size=64"],
                seed=0, cpu=True, num_threads=1, epochs=1)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope="module")
def root(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("genrec_entry")
    rng = np.random.default_rng(0)
    for name, image in (("Synthetic", True), ("TextOnly", False)):
        shutil.copytree(synthetic_root / "Synthetic", out / name)
        for f in (out / name).iterdir():
            if f.name.startswith("Synthetic") and name != "Synthetic":
                f.rename(out / name / f.name.replace("Synthetic", name))
        n = 64
        text = [format_code([*rng.integers(0, 6, size=3), i % 3], "text") for i in range(n)]
        (out / name / f"{name}.index_lemb.json").write_text(json.dumps(codes_to_json(text)))
        if image:
            img = [format_code([i % 7, i // 7, 1, 2], "image") for i in range(n)]
            (out / name / f"{name}.index_vitemb.json").write_text(json.dumps(codes_to_json(img)))
    return out


def _check_metrics(row):
    for k in ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"):
        assert 0.0 <= row[k] <= 1.0
    assert row["HR@1"] <= row["HR@5"] <= row["HR@10"]
    assert row["NDCG@5"] <= row["NDCG@10"] <= row["HR@10"]


def test_genrec_row_with_image_codes_reports_fusion(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(root, "Synthetic")
    out = MODELS["genrec"](ds, 0.0, _args())
    # no --checkpoint-dir: the run is kept under log/results-runs/<start>/ (not a temporary folder)
    run_dir = tmp_path / out["run_dir"]
    assert run_dir.parent.parent.parent == tmp_path / "log" / "results-runs"
    assert run_dir.parent.name == "Synthetic" and run_dir.name == "genrec-default"
    assert (run_dir / "best").is_dir() and (run_dir / "config.json").is_file()
    assert out["users"] == ds.num_users and out["epochs"] == 1 and out["params"] > 0
    # the cpu recipe's constrained objective makes scores item probabilities: fused by their plain mixture
    assert out["train_config"]["objective"] == "constrained" and out["train_config"]["item_inputs"] == "pooled"
    assert out["reported"] == "fused-rawprob"
    assert {"text", "image", "fused-prob", "fused-rawprob", "fused-rrf"} <= set(out["by_modality"])
    _check_metrics(out)
    assert out["NDCG@10"] == out["by_modality"]["fused-rawprob"]["NDCG@10"]
    assert out["train_config"]["tasks"] == ["seqrec", "seqimage", "item2image", "image2item", "fusionseqrec"]
    paper = MODELS["genrec"](ds, 0.0, _args(set=_args().set + ["genrec.fusion=prob", "genrec.objective=full",
                                                                 "genrec.item_inputs=tokens"]))
    assert paper["reported"] == "fused-prob" and paper["train_config"]["objective"] == "full"


def test_genrec_row_without_image_codes_reports_text(root, tmp_path):
    ds = load_dataset(root, "TextOnly")
    out = MODELS["genrec"](ds, 0.0, _args(checkpoint_dir=str(tmp_path)))
    assert out["reported"] == "text" and set(out["by_modality"]) == {"text"}
    _check_metrics(out)
    assert (tmp_path / "TextOnly" / "genrec-default" / "best").is_dir()


def test_genrec_settings_are_checked():
    check_overrides(["genrec.preset=tiny", "genrec.text_codes=x.json"], ["genrec"])
    with pytest.raises(ValueError, match="unknown setting"):
        check_overrides(["genrec.no_such_field=1"], ["genrec"])


def test_convergence_overrides_reach_the_training_config_or_fail(root, tmp_path):
    """benchmarks/convergence.py applies --set to the entry config alone: an unknown genrec field
    (once: genrec.patience) must fail, not vanish."""
    from benchmarks.genrec_entry import GenRecEntryConfig, genrec_train_config
    from genrec.baselines.settings import apply_overrides

    cfg = apply_overrides(GenRecEntryConfig(), "genrec", ["genrec.patience=0", "genrec.eval_every_epochs=2",
                                                          "genrec.weight_decay=0.1", "genrec.label_smoothing=0.1",
                                                          "sasrec.max_len=7"], strict=True)
    assert cfg.patience == 0 and cfg.eval_every_epochs == 2 and cfg.weight_decay == 0.1 and cfg.label_smoothing == 0.1
    ds = load_dataset(root, "Synthetic")
    train_cfg = genrec_train_config(ds, cfg, 8.0, out_dir=tmp_path, run="r", epochs=1, threads=1)
    assert train_cfg.patience == 0 and train_cfg.eval_every_epochs == 2 and train_cfg.weight_decay == 0.1
    assert train_cfg.label_smoothing == 0.1
    assert genrec_train_config(ds, GenRecEntryConfig(), 8.0, out_dir=tmp_path, run="r", epochs=1, threads=1).patience == 10
    with pytest.raises(ValueError, match="genrec has no setting 'no_such_field'"):
        apply_overrides(GenRecEntryConfig(), "genrec", ["genrec.no_such_field=1"], strict=True)


def test_code_files_with_the_same_name_get_their_own_run_folder(tmp_path):
    from benchmarks.genrec_entry import _codes_tag

    a = tmp_path / "mql4grec" / "Scientific.index.json"
    b = tmp_path / "rqvae_native" / "Scientific.index.json"
    tags = {_codes_tag(str(a), ""), _codes_tag(str(b), ""), _codes_tag(str(a), str(b)), _codes_tag("", "")}
    assert len(tags) == 4 and "default" in tags
    assert _codes_tag(str(a), "") == _codes_tag(str(a), "")  # stable, so --resume finds the run again


def test_entry_defaults_are_the_cpu_recipe():
    from benchmarks.genrec_entry import GenRecEntryConfig
    from genrec.recipes import load_recipe

    cpu, entry = load_recipe("cpu", "finetune"), GenRecEntryConfig()
    for field in ("preset", "objective", "item_inputs", "prefix_training", "lr", "batch_size", "warmup_epochs",
                  "max_history"):
        assert getattr(entry, field) == cpu[field], field
    assert ",".join(cpu["tasks"]) == entry.tasks and cpu["scheduler"] == "constant"


def test_anneal_budget_decays_over_the_budget_or_the_given_horizon(root, tmp_path):
    from benchmarks.genrec_entry import GenRecEntryConfig, genrec_train_config

    ds = load_dataset(root, "Synthetic")
    cfg = GenRecEntryConfig(scheduler="cosine", anneal="budget")
    kw = dict(out_dir=tmp_path, run="r", epochs=1, threads=1)
    assert genrec_train_config(ds, cfg, 8.0, **kw).anneal_minutes == 8.0
    assert genrec_train_config(ds, cfg, 8.0, anneal_minutes=30.0, **kw).anneal_minutes == 30.0
    assert genrec_train_config(ds, GenRecEntryConfig(), 8.0, **kw).anneal_minutes == 0.0  # steps: off
    with pytest.raises(ValueError, match="no budget"):
        genrec_train_config(ds, cfg, 0.0, **kw)
    with pytest.raises(ValueError, match="not constant"):
        genrec_train_config(ds, GenRecEntryConfig(anneal="budget"), 8.0, **kw)
    # the budget recipe decays over this call's budget, or over the last budget of a resumed ladder
    budget = GenRecEntryConfig(recipe="budget")
    alone = genrec_train_config(ds, budget, 8.0, **kw)
    assert alone.anneal_to_budget and alone.time_budget_minutes == 8.0 and alone.history_dropout == 0.2
    ladder = genrec_train_config(ds, budget, 8.0, anneal_minutes=30.0, **kw)
    assert not ladder.anneal_to_budget and ladder.anneal_minutes == 30.0 and ladder.decay_share == 0.2
    with pytest.raises(ValueError, match="unknown anneal"):
        genrec_train_config(ds, GenRecEntryConfig(anneal="epochs"), 8.0, **kw)
