"""Real data: tiny-preset pretraining on two datasets sharing code tokens, then finetuning on a third."""

import json

import pytest
from safetensors.torch import load_file

from genrec.finetune import main as finetune_main
from genrec.pretrain import main as pretrain_main

pytestmark = pytest.mark.slow


def _records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def test_pretrain_office_beauty_then_finetune_instruments(shared_data, tmp_path, capsys):
    common = ["--data-root", str(shared_data), "--output-dir", str(tmp_path / "log"), "--preset", "tiny",
              "--cache-dir", str(tmp_path / "cache"), "--num-threads", "1", "--no-progress",
              "--batch-size", "256", "--micro-batch-size", "128", "--valid-users", "300", "--log-every-steps", "1"]
    assert pretrain_main(common + ["--datasets", "Office,Beauty", "--tasks", "seqrec", "--run", "pre",
                                   "--max-steps", "8", "--lr", "3e-3"]) == 0
    pre = tmp_path / "log" / "pre"
    evals = [r for r in _records(pre) if r["type"] == "eval"]
    assert {"valid_loss/Office/seqrec", "valid_loss/Beauty/seqrec"} <= set(evals[-1])
    assert json.loads((pre / "best" / "trainer_state.json").read_text())["metric"] == "valid_loss"

    tasks = "seqrec,seqimage,item2image,image2item,fusionseqrec"
    assert finetune_main(common + ["--dataset", "Instruments", "--tasks", tasks, "--init", str(pre), "--run", "fine",
                                   "--max-steps", "8", "--eval-users", "40", "--eval-beams", "5"]) == 0
    fine = tmp_path / "log" / "fine"
    rows = _records(fine)
    train = [r["loss"] for r in rows if r["type"] == "train"]
    assert len(train) == 8 and train[-1] < train[0]
    last_eval = [r for r in rows if r["type"] == "eval"][-1]
    for task in ("seqrec", "seqimage", "fusionseqrec"):
        assert f"valid_loss/Instruments/{task}" in last_eval
    cfg = json.loads((fine / "config.json").read_text())
    assert cfg["tasks"] == tasks.split(",") and cfg["dedup_codes"] and cfg["init"] == str(pre)
    # the finetune started from the pretrained weights (same shapes, shared vocabulary)
    a = load_file(pre / "best" / "model.safetensors")
    b = load_file(fine / "best" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    # a second run reads the token cache instead of re-encoding
    assert len(list((tmp_path / "cache").iterdir())) == 3
