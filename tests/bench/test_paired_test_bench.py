"""benchmarks/paired_test.py: per-user NDCG@10 of a generator run and a baseline run, compared in pairs."""

import json

import pytest

from conftest import baseline_args, load_benchmark, train_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paired_test_reads_each_runs_own_ranking(synthetic_root, tmp_path):
    from genrec.baselines.registry import MODELS
    from genrec.data import load_dataset
    from genrec.evaluate import EvalConfig, run_evaluation

    gen = train_tiny_run(synthetic_root, tmp_path, objective="constrained", item_inputs="pooled")
    data = tmp_path / "data"
    sas = tmp_path / "sasrec"
    sas_result = MODELS["sasrec"](load_dataset(data, "Synthetic"), 0.0,
                                  baseline_args(epochs=1, batch_size=64, output_dir=str(sas)))
    bench = load_benchmark("paired_test")
    out = tmp_path / "paired"
    assert bench.main(["--dataset", "Synthetic", "--data-root", str(data), "--a", str(gen), str(gen),
                       "--b", str(sas), str(sas), "--out", str(out), "--seed", "1", "--breakdown"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    pair, _, averaged = res["rows"]
    direct = run_evaluation(EvalConfig(ckpt=str(gen), dataset="Synthetic", data_root=str(data), num_threads=1,
                                       progress=False, out_dir=str(tmp_path / "direct")))["metrics"]
    assert pair["mean_a"] == pytest.approx(direct["NDCG@10"])
    assert pair["mean_b"] == pytest.approx(sas_result["NDCG@10"])
    assert pair["users"] == direct["users"] == sas_result["users"]
    assert averaged["diff"] == pytest.approx(pair["diff"]) and pair["diff_low"] <= pair["diff"] <= pair["diff_high"]
    assert "seed-averaged per user (2 runs a side)" in out.with_suffix(".md").read_text()
    # the popularity buckets partition the users: their weighted means are the overall ones
    buckets = res["popularity_breakdown"]
    assert sum(b["users"] for b in buckets) == pair["users"]
    for side in ("mean_a", "mean_b"):
        assert sum(b[side] * b["users"] for b in buckets) / pair["users"] == pytest.approx(pair[side])
    # a run against itself: no difference at all
    assert bench.main(["--dataset", "Synthetic", "--data-root", str(data), "--a", str(sas), "--b", str(sas),
                       "--out", str(tmp_path / "self_dropout0.2")]) == 0  # a dot in the stem is kept
    (row,) = json.loads((tmp_path / "self_dropout0.2.json").read_text())["rows"]
    assert (row["diff"], row["diff_low"], row["diff_high"], row["t_pvalue"]) == (0, 0, 0, 1)


def test_paired_test_refuses_unpaired_or_missing_runs(tmp_path, caplog):
    bench = load_benchmark("paired_test")
    assert bench.main(["--dataset", "Synthetic", "--a", "x", "y", "--b", "z", "--out", str(tmp_path / "o")]) == 2
    assert bench.main(["--dataset", "Synthetic", "--a", str(tmp_path / "none"), "--b", str(tmp_path / "none"),
                       "--out", str(tmp_path / "o")]) == 2
    assert "run folder not found" in caplog.text
    assert not (tmp_path / "o.json").exists()
