"""benchmarks/bench_inputs.py: per-epoch cost of the input modes, and the mask dropout's gain."""

import json
import shutil

import numpy as np
import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_mode_is_measured_against_tokens_of_the_same_tasks_and_dropout(synthetic_root, tmp_path):
    from genrec.data import codes_to_json, format_code

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    rng = np.random.default_rng(0)
    for modality, name in (("text", "index_lemb"), ("image", "index_vitemb")):
        codes = [format_code([*rng.integers(0, 6, size=3), i], modality) for i in range(64)]
        (root / "Synthetic" / f"Synthetic.{name}.json").write_text(json.dumps(codes_to_json(codes)))
    bench = load_benchmark("bench_inputs")
    assert bench.main(["--dataset", "Synthetic", "--data-root", str(root), "--preset", "tiny", "--steps", "1",
                       "--warmup", "0", "--batch-size", "64", "--compare-dropout", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "inputs_cost-Synthetic.json").read_text())["rows"]
    assert [(r["item_inputs"], r["prefix_training"], r["dropout"]) for r in rows] == [
        ("tokens", False, "mask"), ("pooled", False, "mask"), ("tokens", False, "mask"), ("pooled", False, "mask"),
        ("pooled", True, "mask"), ("tokens", False, "torch"), ("pooled", False, "torch")]
    assert all(r["tokens_over_this"] > 0 for r in rows)
    assert all(r["tokens_over_this"] == 1.0 for r in rows if r["item_inputs"] == "tokens")
    assert sum("torch_dropout_over_this" in r for r in rows) == 2
    # every mode's FLOPs are counted, and pooling the items does less compute than reading their tokens
    assert all(r["gflop_per_step"] > 0 for r in rows)
    assert all(r["tokens_flops_over_this"] == 1.0 for r in rows if r["item_inputs"] == "tokens")
    assert rows[1]["tokens_flops_over_this"] > 1.0
    import genrec.model

    assert genrec.model.MASK_DROPOUT is True  # restored after the stock-dropout rows
