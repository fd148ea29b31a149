"""index.train --schedule: the CPU schedule by default without a GPU, flags above it, and a time estimate."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch

from index import train
from index.schedules import remaining, resolve_schedule

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def _cfg(*argv: str):
    args = train.build_parser().parse_args(["--dataset", "A", "--embedding", "e", *argv])
    return train.config_from_args(args), args.resolved_schedule


def test_auto_follows_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_schedule("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_schedule("auto") == "paper"
    assert resolve_schedule("auto", "cpu") == "cpu" and resolve_schedule("auto", "cuda:1") == "paper"
    assert resolve_schedule("cpu", "cuda") == "cpu"
    with pytest.raises(ValueError, match="schedule 'gpu'"):
        resolve_schedule("gpu")
    with pytest.raises(ValueError, match="device 'tpu0'"):
        resolve_schedule("auto", "tpu0")


def test_cpu_schedule_is_the_default_without_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg, name = _cfg()
    assert name == "cpu"
    assert (cfg.epochs, cfg.batch_size, cfg.ae_warmup_epochs, cfg.scheduler) == (40, 256, 5, "cosine")
    cfg, name = _cfg("--schedule", "paper")
    assert name == "paper" and (cfg.epochs, cfg.batch_size, cfg.ae_warmup_epochs, cfg.scheduler) == (500, 2048, 0, "constant")
    # explicit flags and a --config file win over the schedule
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 64}))
    cfg, _ = _cfg("--epochs", "3", "--config", str(path))
    assert (cfg.epochs, cfg.batch_size, cfg.scheduler) == (3, 64, "cosine")


def test_remaining_time_estimate():
    assert remaining(30.0, 10, 0, 40) == "01:30"
    assert remaining(30.0, 15, 5, 40) == "01:15"  # a resumed run measures its own pace
    assert remaining(0.0, 0, 0, 40) == "?"


def test_log_shows_the_schedule_and_time_left(synthetic_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.INFO, logger="index.train")
    rc = train.main(["--data-root", str(synthetic_root), "--dataset", "Synthetic", "--embedding", "synthetic-text",
                     "--run-dir", str(tmp_path / "run"), "--hidden-dims", "32,16", "--code-dim", "8", "--levels", "2",
                     "--codebook-size", "8", "--kmeans-iters", "5", "--epochs", "6", "--threads", "1", "--no-progress"])
    assert rc == 0
    text = caplog.text
    assert "cpu schedule: 40 epochs, batch 256, 5 auto-encoder warm-up epochs, cosine lr" in text
    assert "epoch 5/6" in text and "about" in text and "left" in text
    assert "epoch 6/6" in text and "about 00:00 left" in text


def test_run_sh_passes_the_schedule(tmp_path):
    """scripts/run.sh: SCHEDULE reaches index.train, and the default is auto (device-picked)."""
    fake = tmp_path / "python"
    fake.write_text("#!/usr/bin/env bash\necho \"$@\" >> " + str(tmp_path / "calls") + "\n")
    fake.chmod(0o755)
    data = tmp_path / "data"
    (data / "Mine").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "MODALITIES": "text"}
    subprocess.run(["bash", str(REPO / "scripts" / "run.sh"), "Mine", str(data)], check=True, env=env,
                   capture_output=True)
    subprocess.run(["bash", str(REPO / "scripts" / "run.sh"), "Mine", str(data)], check=True,
                   env={**env, "SCHEDULE": "paper"}, capture_output=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "--schedule auto" in calls[0] and "--epochs" not in calls[0]
    assert "--schedule paper" in calls[1]
