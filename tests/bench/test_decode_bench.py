"""benchmarks/bench_decode.py --ckpt: decode speed of a trained run (a distilled student, say)."""

import json

import pytest

from conftest import load_benchmark, train_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("objective,item_inputs,methods", [("full", "tokens", ["fast", "generate"]),
                                                           ("constrained", "pooled", ["fast"])])
def test_a_trained_run_is_decoded_on_its_own_test_users(synthetic_root, tmp_path, objective, item_inputs, methods):
    run = train_tiny_run(synthetic_root, tmp_path, objective=objective, item_inputs=item_inputs)
    bench = load_benchmark("bench_decode")
    out = tmp_path / "decode.json"
    assert bench.main(["--ckpt", str(run), "--users", "6", "--beams", "3", "--batch-size", "4",
                       "--gen-batch-sizes", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["method"] for r in res["rows"]] == methods and res["setup"]["preset"] == "tiny"
    assert res["setup"]["users"] == 6 and res["compute_floor"] == []
    if "generate" in methods:  # the full-objective token-input run decodes the same lists both ways
        assert res["rows"][1]["vs_fast"]["identical_lists"] == 6
