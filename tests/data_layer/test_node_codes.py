"""Prefix-unique code tokens (``python -m genrec.data node-codes``)."""

import json
import shutil

import numpy as np
import pytest

from genrec.data import codes_to_json, format_code, load_codes
from genrec.data.__main__ import main
from genrec.data.codes import CodeSpec, load_code_spec, parse_code, spec_path
from genrec.data.node_codes import node_codes, write_node_codes


def _codes(n=64, seed=0, levels=4, top=4):
    rng = np.random.default_rng(seed)
    return [format_code(rng.integers(0, top, size=levels), "text") for _ in range(n)]


@pytest.mark.parametrize("from_level", [1, 2, 4])
def test_node_codes_keep_the_tree_and_give_each_node_one_token(from_level):
    codes = _codes()
    new, spec = node_codes(codes, from_level, CodeSpec(codes_per_level=4))
    for L in range(1, 5):
        # two items share a prefix of length L after the renumbering exactly when they did before
        before = {}
        for old, nw in zip(codes, new):
            assert before.setdefault(old[:L], nw[:L]) == nw[:L]
        assert len({c[:L] for c in new}) == len(before)
        # from from_level on, a token names one node: no two prefixes of that level share it
        if L >= from_level:
            assert len({c[L - 1] for c in new}) == len(before)
        else:
            assert [c[L - 1] for c in new] == [c[L - 1] for c in codes]
    nodes = max(len({c[:L] for c in codes}) for L in range(from_level, 5))
    assert spec.codes_per_level == max(4, nodes) and spec.levels == 4
    assert max(max(parse_code(c)) for c in new) < spec.codes_per_level
    assert node_codes(codes, from_level, CodeSpec(codes_per_level=4))[0] == new  # depends on the codes only


def test_node_codes_keep_the_dedup_level_and_refuse_bad_levels():
    codes = [(*c, f"<e_{k}>") for k, c in enumerate(_codes(8))]
    new, spec = node_codes(codes, 2, CodeSpec(codes_per_level=4, dedup_tokens=16))
    assert [c[4] for c in new] == [c[4] for c in codes] and spec.dedup_tokens == 16
    for bad in (0, 5):
        with pytest.raises(ValueError, match="from_level must be between 1 and 4"):
            node_codes(codes, bad)


def test_cli_writes_codes_and_spec_that_load(tmp_path):
    src = tmp_path / "X.index_lemb.json"
    src.write_text(json.dumps(codes_to_json(_codes(300, top=256))))  # no spec: 4 levels of 256
    dst = tmp_path / "out" / "X.node2.index_lemb.json"
    assert main(["node-codes", "--codes", str(src), "--out", str(dst)]) == 0
    spec = load_code_spec(dst)
    assert spec == CodeSpec(codes_per_level=300)  # 300 distinct level-4 nodes outgrow 256
    assert len(load_codes(dst)) == 300  # the new file passes the spec check
    assert main(["node-codes", "--codes", str(src), "--out", str(src)]) == 2  # never overwrites its input
    assert main(["node-codes", "--codes", str(tmp_path / "missing.json"), "--out", str(dst)]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": ["<a_1>", "b_2"]}))
    assert main(["node-codes", "--codes", str(bad), "--out", str(tmp_path / "b2.json")]) == 2
    assert not (tmp_path / "b2.json").exists() and not spec_path(tmp_path / "b2.json").exists()


def test_the_generator_trains_and_ranks_on_node_codes(synthetic_root, tmp_path):
    from genrec.training import default_config, train

    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "Synthetic", root / "Synthetic")
    src = tmp_path / "plain.index_lemb.json"
    src.write_text(json.dumps(codes_to_json(_codes(64, top=3))))  # collisions: the loader adds a dedup level
    dst = root / "Synthetic" / "Synthetic.index_lemb.json"
    write_node_codes(src, dst, 2)
    cfg = default_config("finetune", datasets=["Synthetic"], data_root=str(root), output_dir=str(tmp_path / "log"),
                         preset="tiny", tasks=["seqrec"], objective="constrained", item_inputs="pooled",
                         batch_size=64, micro_batch_size=64, num_threads=1, progress=False, cache_dir="none",
                         valid_users=20, eval_users=20, eval_beams=5, epochs=1, run="r")
    summary = train(cfg)
    assert summary["step"] > 0 and np.isfinite(summary["best_metric"])
