import json

import numpy as np
import pytest

from genrec.utils.io import atomic_dir, atomic_output, atomic_save_npy, atomic_write_json, output_stem, stem_file


def test_atomic_npy_roundtrip_leaves_no_temp_files(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npy(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text('{"v": 2')  # half-written
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise KeyboardInterrupt
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_output_stems_keep_their_dots(tmp_path):
    stem = output_stem(tmp_path / "paired_Scientific_dropout0.2")
    assert stem.name == "paired_Scientific_dropout0.2"
    assert stem_file(stem, ".json").name == "paired_Scientific_dropout0.2.json"
    assert output_stem("x/run_lr1e-3.md") == output_stem("x/run_lr1e-3.json") == output_stem("x/run_lr1e-3")
