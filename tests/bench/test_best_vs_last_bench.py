"""benchmarks/best_vs_last.py: the selected and the final checkpoint of a run, scored on the test split."""

import json

import pytest
import torch

from conftest import load_benchmark, train_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_best_and_last_are_scored_from_their_own_weights(synthetic_root, tmp_path):
    from genrec.evaluate import EvalConfig, run_evaluation
    from genrec.model import load_model

    run = train_tiny_run(synthetic_root, tmp_path, objective="constrained", item_inputs="pooled",
                         select_metric="valid_loss")
    # the final weights moved away from the selected ones, so each score shows which weights it read
    model = load_model(run / "last")
    torch.manual_seed(0)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(torch.randn_like(w))
    model.save_pretrained(str(run / "last"))
    bench = load_benchmark("best_vs_last")
    out = tmp_path / "bvl"
    assert bench.main(["--dataset", "Synthetic", "--runs", str(run), "--out", str(out)]) == 0
    res = json.loads((tmp_path / "bvl.json").read_text())
    (row,) = res["runs"]
    assert row["best_step"] == json.loads((run / "best" / "trainer_state.json").read_text())["step"]
    assert row["best_test_NDCG@10"] != row["last_test_NDCG@10"]
    for sub in ("best", "last"):
        direct = run_evaluation(EvalConfig(ckpt=str(run), dataset="Synthetic", checkpoint=sub, num_threads=1,
                                           progress=False, out_dir=str(tmp_path / sub)))["metrics"]["NDCG@10"]
        assert row[f"{sub}_test_NDCG@10"] == pytest.approx(direct)
    assert res["mean_last"] == pytest.approx(row["last_test_NDCG@10"])
    assert "| mean of 1 |" in (tmp_path / "bvl.md").read_text()
    assert bench.main(["--dataset", "Synthetic", "--runs", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
