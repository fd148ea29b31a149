"""benchmarks/convergence.py: one run per (dataset, model) resumed from budget to budget, resumable points."""

import json

import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_curve_points_come_from_one_resumed_run_and_a_rerun_skips_them(synthetic_root, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from genrec.data import codes_to_json, format_code

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    rng = np.random.default_rng(0)
    text = [format_code([*rng.integers(0, 6, size=3), i % 3], "text") for i in range(64)]
    (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(text)))
    conv = load_benchmark("convergence")
    # a dot inside the stem (a setting's value) must not be taken for an extension
    out = tmp_path / "res" / "convergence_dropout0.15"
    argv = ["--datasets", "Synthetic", "--models", "sasrec", "genrec+constrained+pooled", "--budgets", "0.02", "0.05",
            "--data-root", str(root), "--runs", str(tmp_path / "runs"), "--out", str(out), "--epochs", "3",
            "--set", "genrec.preset=tiny", "--set", "genrec.eval_users=50", "--set", "genrec.beams=5"]
    assert conv.main(argv) == 0
    res = json.loads((out.parent / "convergence_dropout0.15.json").read_text())
    pts = {(p["model"], p["budget_minutes"]): p for p in res["points"]}
    assert set(pts) == {(m, b) for m in ("sasrec", "genrec+constrained+pooled") for b in (0.02, 0.05)}
    for p in res["points"]:
        assert 0 <= p["test_NDCG@10"] <= 1
    g1, g2 = pts[("genrec+constrained+pooled", 0.02)], pts[("genrec+constrained+pooled", 0.05)]
    assert g2["steps"] >= g1["steps"]  # the second point continued the first run
    assert g1["config"]["objective"] == "constrained" and g1["config"]["item_inputs"] == "pooled"
    cfg = json.loads((tmp_path / "runs" / "Synthetic" / "genrec+constrained+pooled" / "config.json").read_text())
    assert cfg["budget_clock"] == "cpu" and cfg["objective"] == "constrained"
    assert (out.parent / "convergence_dropout0.15.md").read_text().count("| genrec+constrained+pooled |") == 1
    assert (out.parent / "convergence_dropout0.15.png").is_file()
    # a stopped run's best checkpoint scores the same as the point it gave
    evalc = load_benchmark("eval_checkpoint")
    assert evalc.main(["--dataset", "Synthetic", "--model", "genrec+constrained+pooled", "--runs", str(tmp_path / "runs"),
                       "--data-root", str(root), "--out", str(tmp_path / "interim.json"), "--set", "genrec.preset=tiny",
                       "--set", "genrec.eval_users=50", "--set", "genrec.beams=5"]) == 0
    interim = json.loads((tmp_path / "interim.json").read_text())
    assert interim["test_NDCG@10"] == g2["test_NDCG@10"] and interim["trained_cpu_seconds"] > 0
    # a rerun finds every point done and trains nothing
    monkeypatch.setattr(conv, "_genrec_point", lambda *a, **k: pytest.fail("retrained a finished point"))
    monkeypatch.setattr(conv, "_sasrec_point", lambda *a, **k: pytest.fail("retrained a finished point"))
    assert conv.main(argv) == 0
    assert len(json.loads((out.parent / "convergence_dropout0.15.json").read_text())["points"]) == 4


def test_a_point_an_epoch_cap_ended_early_is_flagged(tmp_path):
    """A run the epoch cap stopped before its budget is not a measurement of that budget."""
    conv = load_benchmark("convergence")
    base = {"dataset": "D", "model": "genrec+x", "test_NDCG@10": 0.05}
    points = [{**base, "budget_minutes": 30.0, "stop_reason": "budget", "train_cpu_seconds": 1801.0},
              {**base, "budget_minutes": 60.0, "stop_reason": "epochs", "train_cpu_seconds": 2894.0},
              {**base, "model": "genrec+y", "budget_minutes": 60.0, "stop_reason": "epochs", "train_cpu_seconds": 3599.0}]
    conv.write_outputs({"points": points, "commands": []}, tmp_path / "c")
    rows = {line.split(" | ")[0]: line for line in (tmp_path / "c.md").read_text().splitlines()
            if line.startswith("| genrec")}
    assert "0.0500 (epochs cap at 48.2 min)" in rows["| genrec+x"] and rows["| genrec+x"].count("cap at") == 1
    assert "cap at" not in rows["| genrec+y"]  # the cap and the budget ended it together


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    conv = load_benchmark("convergence")
    assert conv.main(["--datasets", "X", "--models", "genrec-nope", "--out", str(tmp_path / "c")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert conv.main(["--datasets", "X", "--budgets", "30", "8", "--out", str(tmp_path / "c")]) == 2
    assert "ascending" in capsys.readouterr().err


def _rung_data(synthetic_root, tmp_path):
    import shutil

    import numpy as np

    from genrec.data import codes_to_json, format_code, load_dataset

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    rng = np.random.default_rng(0)
    text = [format_code([*rng.integers(0, 6, size=3), i % 3], "text") for i in range(64)]
    (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(text)))
    return root, load_dataset(root, "Synthetic")


def _rung_args(tmp_path, **kw):
    import argparse

    return argparse.Namespace(set=["genrec.preset=tiny", "genrec.eval_users=20", "genrec.beams=5"],
                              codebook_runs=kw.get("codebooks", {}), pretrained_runs=kw.get("pretrained", {}),
                              teacher_runs=kw.get("teacher", {}))


@pytest.mark.parametrize("model", ["genrec-published", "genrec+constrained", "genrec+constrained+pooled",
                                   "genrec+constrained+pooled+dropout0.3", "genrec+constrained+pooled+paper",
                                   "genrec+constrained+pooled+cosine25",
                                   "genrec+constrained+pooled+prefix", "genrec+constrained+pooled+pretrain",
                                   "genrec+constrained+pooled+selectloss", "genrec+constrained+pooled+ema",
                                   "genrec+constrained+pooled+grouped", "genrec+constrained+pooled+itememb",
                                   "genrec+constrained+pooled+itememb+itemdrop0.5"])
def test_every_rung_trains_one_epoch_on_the_fixture(synthetic_root, tmp_path, model):
    import dataclasses

    from benchmarks.genrec_entry import genrec_train_config
    from genrec.training import train

    conv = load_benchmark("convergence")
    assert set(conv.VARIANTS) >= {model}
    root, dataset = _rung_data(synthetic_root, tmp_path)
    pretrained = {}
    if model.endswith("+pretrain"):
        # a pretraining run on the same code vocabulary, the rung finetunes from it
        pre = conv.variant_config(dataset, "genrec+constrained+pooled", _rung_args(tmp_path), {})
        train(dataclasses.replace(genrec_train_config(dataset, pre, 0, out_dir=tmp_path / "pre", run="p", epochs=1,
                                                      threads=1), mode="pretrain", cache_dir="none"))
        pretrained = {"Synthetic": str(tmp_path / "pre" / "p")}
    cfg = conv.variant_config(dataset, model, _rung_args(tmp_path, pretrained=pretrained), {})
    for field, value in conv.VARIANTS[model].items():
        if field not in ("pretrain", "seminit", "preset"):  # preset: the test's tiny override wins
            assert getattr(cfg, field) == value, field
    if cfg.epochs:
        cfg = dataclasses.replace(cfg, epochs=1)  # the fixture trains one epoch whatever the rung's horizon
    tcfg = dataclasses.replace(genrec_train_config(dataset, cfg, 0, out_dir=tmp_path / "runs", run="r", epochs=1,
                                                   threads=1), cache_dir="none")
    out = train(tcfg)
    assert out["stop_reason"] == "epochs"
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert saved["objective"] == cfg.objective and saved["item_inputs"] == cfg.item_inputs
    assert saved["init"] == (pretrained.get("Synthetic"))
    assert saved["scheduler"] == conv.VARIANTS[model].get("scheduler", "constant")
    assert saved["select_metric"] == conv.VARIANTS[model].get("select_metric", "ndcg@10")
    assert saved["group_by_length"] == conv.VARIANTS[model].get("group_by_length", False)
    assert saved["item_embeddings"] == conv.VARIANTS[model].get("item_embeddings", False)
    assert saved["item_dropout"] == conv.VARIANTS[model].get("item_dropout", 0.0)
    assert saved["decay_share"] == conv.VARIANTS[model].get("decay_share", 1.0)


def test_the_budget_recipe_rung_trains_one_epoch_and_decays_over_the_ladders_last_budget(synthetic_root, tmp_path):
    import dataclasses

    from benchmarks.genrec_entry import genrec_train_config
    from genrec.training import train

    conv = load_benchmark("convergence")
    root, dataset = _rung_data(synthetic_root, tmp_path)
    cfg = conv.variant_config(dataset, "genrec+budget", _rung_args(tmp_path), {})
    assert cfg.recipe == "budget"
    tcfg = genrec_train_config(dataset, cfg, 8.0, out_dir=tmp_path / "runs", run="r", epochs=1, threads=1,
                               anneal_minutes=30.0)
    assert tcfg.anneal_minutes == 30.0 and tcfg.history_dropout == 0.2 and tcfg.eval_every_epochs == 0
    assert tcfg.dropout_free_under_epochs == 60  # decided over the ladder's 30 minutes, not this call's 8
    out = train(dataclasses.replace(tcfg, cache_dir="none", preset="tiny"))
    assert out["stop_reason"] == "epochs"
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert saved["recipe"] == "budget" and saved["scheduler"] == "linear" and saved["group_by_length"]


@pytest.mark.parametrize("model,scheduler", [("genrec+constrained+pooled+anneal+cfcodes", "cosine"),
                                             ("genrec+constrained+pooled+cfcodes", "constant")])
def test_the_cfcodes_rungs_need_explicit_codes(synthetic_root, tmp_path, model, scheduler):
    conv = load_benchmark("convergence")
    _, dataset = _rung_data(synthetic_root, tmp_path)
    with pytest.raises(SystemExit, match="--text-codes Synthetic="):
        conv.variant_config(dataset, model, _rung_args(tmp_path), {})
    cfg = conv.variant_config(dataset, model, _rung_args(tmp_path), {"Synthetic": "cf.json"})
    assert cfg.text_codes == "cf.json" and cfg.scheduler == scheduler


def test_the_cfview_rung_takes_the_second_view_from_image_codes(synthetic_root, tmp_path):
    conv = load_benchmark("convergence")
    _, dataset = _rung_data(synthetic_root, tmp_path)
    args = _rung_args(tmp_path)
    args.image_code_files = {}
    with pytest.raises(SystemExit, match="--image-codes Synthetic="):
        conv.variant_config(dataset, "genrec+constrained+pooled+cfview", args, {})
    args.image_code_files = {"Synthetic": "cf-image.json"}
    cfg = conv.variant_config(dataset, "genrec+constrained+pooled+cfview", args, {})
    assert cfg.image_codes == "cf-image.json" and cfg.text_codes == "" and cfg.objective == "constrained"


def test_the_distilled_student_rung_trains_from_a_teacher_run(synthetic_root, tmp_path):
    import dataclasses

    from benchmarks.genrec_entry import genrec_train_config
    from genrec.training import train

    conv = load_benchmark("convergence")
    root, dataset = _rung_data(synthetic_root, tmp_path)
    teacher = conv.variant_config(dataset, "genrec+constrained+pooled", _rung_args(tmp_path), {})
    train(dataclasses.replace(genrec_train_config(dataset, teacher, 0, out_dir=tmp_path / "t", run="t", epochs=1,
                                                  threads=1), cache_dir="none"))
    with pytest.raises(SystemExit, match="needs --teacher Synthetic="):
        conv.variant_config(dataset, "genrec+constrained+pooled+anneal+tiny+distill", _rung_args(tmp_path), {})
    for model, teacher_run in (("genrec+constrained+pooled+anneal+tiny", None),
                               ("genrec+constrained+pooled+anneal+tiny+distill", str(tmp_path / "t" / "t"))):
        cfg = conv.variant_config(dataset, model, _rung_args(tmp_path, teacher={"Synthetic": str(tmp_path / "t" / "t")}), {})
        tcfg = genrec_train_config(dataset, cfg, 0, out_dir=tmp_path / "runs", run=model, epochs=1, threads=1,
                                   anneal_minutes=1.0)
        assert train(dataclasses.replace(tcfg, cache_dir="none"))["stop_reason"] == "epochs"
        saved = json.loads((tmp_path / "runs" / model / "config.json").read_text())
        assert saved["preset"] == "tiny" and saved["distill_from"] == teacher_run and saved["anneal_minutes"] == 1.0


def test_a_rung_without_its_run_is_refused(synthetic_root, tmp_path):
    conv = load_benchmark("convergence")
    _, dataset = _rung_data(synthetic_root, tmp_path)
    with pytest.raises(SystemExit, match="needs --pretrained Synthetic="):
        conv.variant_config(dataset, "genrec+constrained+pooled+pretrain", _rung_args(tmp_path), {})
    with pytest.raises(SystemExit, match="needs --codebooks Synthetic="):
        conv.variant_config(dataset, "genrec+constrained+pooled+seminit", _rung_args(tmp_path), {})
