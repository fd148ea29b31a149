"""benchmarks/bench_decode.py --ckpt: decode speed of a trained run (a distilled student, say)."""

import json
import shutil

import numpy as np
import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("objective,item_inputs,methods", [("full", "tokens", ["fast", "generate"]),
                                                           ("constrained", "pooled", ["fast"])])
def test_a_trained_run_is_decoded_on_its_own_test_users(synthetic_root, tmp_path, objective, item_inputs, methods):
    from genrec.data import codes_to_json, format_code
    from genrec.training import default_config, train

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    rng = np.random.default_rng(0)
    codes = [format_code([*rng.integers(0, 6, size=3), i], "text") for i in range(64)]
    (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(codes)))
    train(default_config("finetune", datasets=["Synthetic"], data_root=str(root), output_dir=str(tmp_path / "log"),
                         run="r", preset="tiny", tasks=["seqrec"], epochs=1, batch_size=64, micro_batch_size=64,
                         objective=objective, item_inputs=item_inputs, num_threads=1, progress=False,
                         cache_dir="none", eval_users=10, eval_beams=3))
    bench = load_benchmark("bench_decode")
    out = tmp_path / "decode.json"
    assert bench.main(["--ckpt", str(tmp_path / "log" / "r"), "--users", "6", "--beams", "3", "--batch-size", "4",
                       "--gen-batch-sizes", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["method"] for r in res["rows"]] == methods and res["setup"]["preset"] == "tiny"
    assert res["setup"]["users"] == 6 and res["compute_floor"] == []
    if "generate" in methods:  # the full-objective token-input run decodes the same lists both ways
        assert res["rows"][1]["vs_fast"]["identical_lists"] == 6
