"""benchmarks/run_summary.py: a run folder's progress and test scores, nothing guessed for what is missing."""

import json

from conftest import load_benchmark


def test_a_row_holds_progress_config_and_test_scores(tmp_path):
    bench = load_benchmark("run_summary")
    run = tmp_path / "student"
    (run / "eval").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"recipe": "cpu", "distill_from": "log/t", "lr": 1}))
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"type": "train", "step": 1}, {"type": "eval", "step": 10, "epoch": 1.0, "valid_NDCG@10": 0.05},
        {"type": "eval", "step": 20, "epoch": 2.0, "valid_NDCG@10": 0.04},
        {"type": "end", "step": 20, "stop_reason": "time_budget", "train_seconds": 9.5}]))
    (run / "eval" / "Ds-seqrec-test.metrics.json").write_text(json.dumps(
        {"metrics": {"HR@10": 0.2, "NDCG@10": 0.1, "HR@5": 0.15, "NDCG@5": 0.08}, "users_per_second": 100.0}))
    stopped = tmp_path / "stopped"  # a deadline killed it before anything was written
    stopped.mkdir()
    out = tmp_path / "summary.json"
    assert bench.main([str(out), "Ds", str(run), str(stopped)]) == 0
    row, empty = json.loads(out.read_text())
    assert row["step"] == 20 and row["epoch"] == 2.0 and row["stop_reason"] == "time_budget"
    assert row["valid_curve"] == [[10, 0.05], [20, 0.04]] and row["best_valid_NDCG@10"] == 0.05
    assert row["config"]["distill_from"] == "log/t" and "lr" not in row["config"]
    assert row["seqrec"] == {"HR@10": 0.2, "NDCG@10": 0.1, "HR@5": 0.15, "NDCG@5": 0.08, "users_per_second": 100.0}
    assert "seqimage" not in row and "fused" not in row
    assert empty == {"run": "stopped"}
