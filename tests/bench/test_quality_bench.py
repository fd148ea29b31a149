"""benchmarks/quality.py: a finetuned run's evaluation files become one table with the published rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark

@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def _fake_run(run: Path, dataset: str) -> dict:
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"preset": "tiny", "tasks": ["seqrec", "seqimage"], "batch_size": 8,
                                                 "lr": 1e-3, "scheduler": "cosine", "init": None}))
    lines = [{"type": "train", "step": 10, "epoch": 0.5, "loss": 5.0, "train_seconds": 3.0},
             {"type": "train", "step": 20, "epoch": 1.0, "loss": 4.0, "train_seconds": 6.0},
             {"type": "eval", "step": 20, "epoch": 1.0, "valid_NDCG@10": 0.1},
             {"type": "end", "step": 20, "stop_reason": "epochs", "train_seconds": 6.5}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    metrics = {"HR@1": 0.1, "HR@5": 0.2, "HR@10": 0.3, "NDCG@5": 0.15, "NDCG@10": 0.18}
    for task in ("seqrec", "fused"):
        (run / "eval" / f"{dataset}-{task}-test.metrics.json").write_text(json.dumps({"metrics": metrics}))
    return metrics


def test_table_lists_the_run_popularity_and_its_training(quality, synthetic_root, tmp_path, capsys):
    metrics = _fake_run(tmp_path / "run", "Synthetic")
    out = tmp_path / "out"
    assert quality.main(["--ckpt", str(tmp_path / "run"), "--dataset", "Synthetic", "--data-root", str(synthetic_root),
                         "--out", str(out), "--note", "budget: a test"]) == 0
    md = (out / "quality-Synthetic.md").read_text()
    assert "| genrec text (seqrec) | 0.1000 | 0.2000 | 0.3000 | 0.1500 | 0.1800 |" in md
    assert "| popularity |" in md and "genrec fused" in md and "genrec image" not in md
    assert "20 steps (1.00 epochs) of batch 8" in md and "5.000 -> 4.000" in md and "budget: a test" in md
    record = json.loads((out / "quality-Synthetic.json").read_text())
    assert record["rows"]["genrec text (seqrec)"] == metrics and record["training"]["stop_reason"] == "epochs"
    assert md.strip() in capsys.readouterr().out


def test_published_rows_for_instruments_and_a_clear_error_without_evaluations(quality, synthetic_root, tmp_path, capsys):
    run = tmp_path / "empty"
    _fake_run(run, "Other")  # evaluated on another dataset only
    assert quality.main(["--ckpt", str(run), "--dataset", "Synthetic", "--data-root", str(synthetic_root),
                         "--out", str(tmp_path / "o")]) == 2
    assert "holds no Synthetic test metrics" in capsys.readouterr().err
    assert any("MQL4GRec" in name for name, _ in load_benchmark("results").PUBLISHED["Instruments"])
