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
    out = tmp_path / "res" / "convergence"
    argv = ["--datasets", "Synthetic", "--models", "sasrec", "genrec+constrained+pooled", "--budgets", "0.02", "0.05",
            "--data-root", str(root), "--runs", str(tmp_path / "runs"), "--out", str(out), "--epochs", "3",
            "--set", "genrec.preset=tiny", "--set", "genrec.eval_users=50", "--set", "genrec.beams=5"]
    assert conv.main(argv) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    pts = {(p["model"], p["budget_minutes"]): p for p in res["points"]}
    assert set(pts) == {(m, b) for m in ("sasrec", "genrec+constrained+pooled") for b in (0.02, 0.05)}
    for p in res["points"]:
        assert 0 <= p["test_NDCG@10"] <= 1
    g1, g2 = pts[("genrec+constrained+pooled", 0.02)], pts[("genrec+constrained+pooled", 0.05)]
    assert g2["steps"] >= g1["steps"]  # the second point continued the first run
    assert g1["config"]["objective"] == "constrained" and g1["config"]["item_inputs"] == "pooled"
    cfg = json.loads((tmp_path / "runs" / "Synthetic" / "genrec+constrained+pooled" / "config.json").read_text())
    assert cfg["budget_clock"] == "cpu" and cfg["objective"] == "constrained"
    assert out.with_suffix(".md").read_text().count("| genrec+constrained+pooled |") == 1
    assert out.with_suffix(".png").is_file()
    # a rerun finds every point done and trains nothing
    monkeypatch.setattr(conv, "_genrec_point", lambda *a, **k: pytest.fail("retrained a finished point"))
    monkeypatch.setattr(conv, "_sasrec_point", lambda *a, **k: pytest.fail("retrained a finished point"))
    assert conv.main(argv) == 0
    assert len(json.loads(out.with_suffix(".json").read_text())["points"]) == 4


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    conv = load_benchmark("convergence")
    assert conv.main(["--datasets", "X", "--models", "genrec-nope", "--out", str(tmp_path / "c")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert conv.main(["--datasets", "X", "--budgets", "30", "8", "--out", str(tmp_path / "c")]) == 2
    assert "ascending" in capsys.readouterr().err
