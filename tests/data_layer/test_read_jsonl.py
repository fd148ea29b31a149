"""``read_jsonl``: a torn final line (a crash mid-append) is dropped with a warning; resume survives it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from genrec.utils.io import append_jsonl, read_jsonl


def test_torn_tail_is_dropped_with_a_warning_naming_the_file(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "loss": 1.')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert str(path) in caplog.text and "torn" in caplog.text
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 3: malformed JSON"):
        read_jsonl(path, tolerate_torn_tail=False)


def test_malformed_middle_line_is_an_error(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n\n')
    with pytest.raises(ValueError, match=r"m.jsonl: line 2: malformed JSON"):
        read_jsonl(path)


def test_resume_survives_a_torn_metrics_line(synthetic_root, tmp_path):
    from genrec.data import codes_to_json, format_code
    from genrec.finetune import main as finetune_main

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path / "data"
        shutil.copytree(synthetic_root / "Synthetic", root / "Synthetic")
        rng = np.random.default_rng(0)
        codes = [format_code([*rng.integers(0, 6, size=3), i], "text") for i in range(64)]
        (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(codes)))
        log = tmp_path / "log"
        base = ["--dataset", "Synthetic", "--data-root", str(root), "--output-dir", str(log), "--preset", "tiny",
                "--tasks", "seqrec", "--batch-size", "128", "--micro-batch-size", "128", "--num-threads", "1",
                "--no-progress", "--cache-dir", "none", "--select-metric", "valid_loss", "--valid-users", "20",
                "--eval-users", "10", "--eval-beams", "2", "--log-every-steps", "1", "--max-steps", "4",
                "--save-every-steps", "2", "--run", "torn"]
        assert finetune_main(base + ["--stop-after-steps", "2"]) == 0
        metrics = log / "torn" / "metrics.jsonl"
        with open(metrics, "a") as f:
            f.write('{"type": "train", "step": 3, "lo')  # killed mid-append
        assert finetune_main(["--run", "torn", "--output-dir", str(log), "--resume", "--stop-after-steps", "0"]) == 0
        rows = read_jsonl(metrics, tolerate_torn_tail=False)
        assert [r["step"] for r in rows if r.get("type") == "train"] == [1, 2, 3, 4]
    finally:
        torch.set_num_threads(threads)
