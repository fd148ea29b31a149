"""The results benchmark script: tables, JSON, command line, n/a rows, merge."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("results")


def test_benchmark_writes_table_and_json(bench, synthetic_root, tmp_path):
    # a copy without embeddings: content models must come out as "n/a", not crash the run
    shutil.copytree(synthetic_root / "Synthetic", tmp_path / "data" / "Bare")
    for p in (tmp_path / "data" / "Bare").iterdir():
        if ".emb-" in p.name:
            p.unlink()
        else:
            p.rename(p.with_name(p.name.replace("Synthetic", "Bare")))
    out = tmp_path / "out"
    argv = ["--datasets", "Bare", "--models", "popularity", "sasrec", "mmtransformer", "--budget-minutes", "0.05",
            "--epochs", "1", "--batch-size", "64", "--threads", "1", "--cpu", "--data-root", str(tmp_path / "data"),
            "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    runs = res["runs"]["Bare"]
    assert runs["mmtransformer"]["status"] == "n/a" and "no text embeddings" in runs["mmtransformer"]["reason"]
    for name in ("popularity", "sasrec"):
        assert 0 <= runs[name]["NDCG@10"] <= runs[name]["HR@10"] <= 1
        assert "train_seconds" in runs[name] and "params" in runs[name]
    md = (out / "results.md").read_text()
    assert "python benchmarks/results.py " + " ".join(argv) in md
    assert "| sasrec | " in md and "| mmtransformer | n/a" in md

    # --merge keeps earlier rows and adds the new command
    argv2 = ["--datasets", "Bare", "--models", "popularity", "--budget-minutes", "1", "--data-root",
             str(tmp_path / "data"), "--out", str(out), "--merge", "--suffix", " again"]
    assert bench.main(argv2) == 0
    res = json.loads((out / "results.json").read_text())
    assert {"sasrec", "popularity again"} <= set(res["runs"]["Bare"]) and len(res["commands"]) == 2


def test_benchmark_rejects_bad_arguments(bench, capsys):
    assert bench.main(["--models", "nope", "--budget-minutes", "1"]) == 2
    assert "unknown models" in capsys.readouterr().err
    assert bench.main(["--models", "sasrec", "--budget-minutes", "0"]) == 2


def test_published_numbers_are_in_the_table(bench):
    md = bench.render_markdown({"commands": ["cmd"], "runs": {"Instruments": {}, "Beauty": {}}, "budget_minutes": 1,
                                "environment": {"machine": "m", "torch": "t", "threads": 1, "device": "cpu"}})
    assert "| *published: SASRec (MQL4GRec paper)* | 0.0318 | 0.0946 | 0.1233 | 0.0654 | 0.0746 |" in md
    assert "SASRec (TIGER paper)" in md and "0.0605" in md


def test_tiger_sports_and_toys_rows(bench):
    md = bench.render_markdown({"commands": ["cmd"], "runs": {"Sports": {}, "Toys_and_Games": {}, "Office": {}},
                                "budget_minutes": 1,
                                "environment": {"machine": "m", "torch": "t", "threads": 1, "device": "cpu"}})
    sports = md.split("## Sports")[1].split("## ")[0]
    toys = md.split("## Toys_and_Games")[1].split("## ")[0]
    # columns: HR@1 HR@5 HR@10 NDCG@5 NDCG@10
    assert "| *published: TIGER (TIGER paper)* | - | 0.0264 | 0.0400 | 0.0181 | 0.0225 |" in sports
    assert "| *published: TIGER (TIGER paper)* | - | 0.0521 | 0.0712 | 0.0371 | 0.0432 |" in toys
    assert "published" not in md.split("## Office")[1]


def test_convergence_points_become_rows_under_their_budget_and_suffix(bench, tmp_path):
    metrics = {"HR@10": 0.1, "NDCG@10": 0.05, "HR@5": 0.07, "NDCG@5": 0.04, "HR@1": 0.02, "NDCG@1": 0.02}
    points = [{"dataset": "Scientific", "model": "genrec+constrained+pooled", "budget_minutes": b, "test_NDCG@10": 0.05,
               "reported": "text", "by_modality": {"text": metrics}, "stop_reason": "time_budget", "best_epoch": 3}
              for b in (8.0, 30.0)] + [{"dataset": "Scientific", "model": "sasrec", "budget_minutes": 30.0}]
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"points": points}))
    out = tmp_path / "out"
    argv = ["--from-convergence", str(conv), "--budget-minutes", "30", "--datasets", "Scientific", "--out", str(out),
            "--suffix", " (LETTER codes)"]
    assert bench.main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]["Scientific"]
    assert list(runs) == ["genrec+constrained+pooled (convergence run, 30 CPU-min) (LETTER codes)"]  # sasrec is no genrec point
    row = next(iter(runs.values()))
    assert row["NDCG@10"] == 0.05 and row["train_config"] == {"budget_minutes": "30 CPU"}
    # merged into a file of 8-minute runs, the import keeps that file's budget and machine line
    existing = json.loads((out / "results.json").read_text())
    existing["budget_minutes"], existing["environment"]["machine"] = 8.0, "the machine of the 8-minute runs"
    (out / "results.json").write_text(json.dumps(existing))
    assert bench.main(argv[:-2] + ["--merge", "--suffix", " (seed 1)"]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert merged["budget_minutes"] == 8.0 and len(merged["runs"]["Scientific"]) == 2
    md = (out / "results.md").read_text()
    assert "Budget: 8.0 min of training" in md and "the machine of the 8-minute runs" in md
