"""benchmarks/code_level_hits.py: prefix hits of a generator run's test predictions, by target popularity."""

import json

import pytest

from conftest import load_benchmark, train_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prefix_hits_end_in_the_runs_hit_rate(synthetic_root, tmp_path, caplog):
    from genrec.evaluate import EvalConfig, run_evaluation

    run = train_tiny_run(synthetic_root, tmp_path, objective="constrained", item_inputs="pooled")
    bench = load_benchmark("code_level_hits")
    out = tmp_path / "hits"
    assert bench.main(["--run", str(run), "--dataset", "Synthetic", "--out", str(out)]) == 2  # not evaluated yet
    assert "no test predictions" in caplog.text
    metrics = run_evaluation(EvalConfig(ckpt=str(run), dataset="Synthetic", num_threads=1, progress=False))["metrics"]
    assert bench.main(["--run", str(run), "--dataset", "Synthetic", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    users = sum(r["users"] for r in rows)
    assert users == metrics["users"]
    levels = [k for k in rows[0] if k.startswith("L")]
    assert len(levels) >= 4
    for r in rows:  # a shared prefix of L tokens implies one of every shorter length
        shares = [r[lv] for lv in levels]
        assert shares == sorted(shares, reverse=True) and 0 <= shares[-1] <= shares[0] <= 1
    # codes are unique, so sharing every token is a hit: the last level is HR@10
    assert sum(r[levels[-1]] * r["users"] for r in rows) / users == pytest.approx(metrics["HR@10"])
    assert bench.main(["--run", str(run), "--dataset", "Synthetic", "--k", "0", "--out", str(out)]) == 2
