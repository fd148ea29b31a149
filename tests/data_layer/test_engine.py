"""genrec.utils.engine and genrec.utils.checkpoints: the one loop and checkpoint layout, on a toy client."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, load_model, save_model

from genrec.utils import checkpoints
from genrec.utils.engine import Client, Engine, LoopConfig, LoopState, StepOutput


class Toy(Client):
    """Noisy linear regression with dropout: RNG, batch order and optimizer state all matter."""

    def __init__(self, lr: float = 0.05, n: int = 40, batch: int = 8, scores: list[float] | None = None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
        torch.manual_seed(1)
        self.model = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(3, 1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 1.0 / (1 + 0.01 * s))
        self.batch, self.scores, self.evals, self.best_seen = batch, scores, 0, []

    def epoch_batches(self, epoch):
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(100 + epoch))
        return list(perm.split(self.batch))

    def train_step(self, idx, state):
        self.model.train()
        loss = (self.model(self.x[idx]) - self.y[idx]).pow(2).sum()
        self.optimizer.zero_grad()
        (loss / len(idx)).backward()
        self.optimizer.step()
        self.scheduler.step()
        return StepOutput(loss.detach(), len(idx), len(idx))

    def evaluate(self):
        self.evals += 1
        if self.scores is not None:  # scripted validation scores
            return {"score": self.scores[min(self.evals - 1, len(self.scores) - 1)]}
        self.model.eval()
        with torch.no_grad():
            return {"valid_loss": float((self.model(self.x) - self.y).pow(2).mean())}

    def save_model(self, folder, best):
        save_model(self.model, str(Path(folder) / "model.safetensors"))

    def load_model(self, folder):
        load_model(self.model, str(Path(folder) / "model.safetensors"))

    def on_best(self, metrics):
        self.best_seen.append(metrics)


def run(tmp: Path | None, resume: bool = False, client: Toy | None = None, **loop) -> tuple[Engine, Toy]:
    client = client or Toy()
    cfg = LoopConfig(**{"epochs": 3, "progress": False, "log_every_steps": 1, **loop})
    engine = Engine(client, cfg, tmp, steps_per_epoch=len(client.epoch_batches(0)))
    if resume:
        assert engine.resume()
    elif tmp is not None:
        engine.start_fresh()
    engine.fit()
    return engine, client


def train_records(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["type"] == "train"]


def test_layout_last_link_and_pruning(tmp_path):
    engine, _ = run(tmp_path, keep_checkpoints=1)
    st = engine.state
    assert st.stop_reason == "epochs" and st.finished and st.step == 15 and st.epoch == 3
    last = tmp_path / checkpoints.LAST
    assert last.is_symlink() and os.readlink(last) == "checkpoint-15"
    assert [p.name for p in checkpoints.step_dirs(tmp_path)] == ["checkpoint-15"]  # older ones pruned
    for name in ("model.safetensors", "optimizer.safetensors", "training_state.json", "trainer_state.json"):
        assert (last / name).is_file(), name
    saved = json.loads((last / "trainer_state.json").read_text())
    assert saved["format"] == checkpoints.FORMAT and saved["step"] == 15 and saved["world_size"] == 1
    best = json.loads((tmp_path / "best" / "trainer_state.json").read_text())
    assert best["metric"] == "valid_loss" and best["value"] == pytest.approx(st.best_metric)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in rows].count("eval") == 3 and rows[-1]["type"] == "end"
    kept, _ = run(tmp_path / "all", keep_checkpoints=0)
    assert [p.name for p in checkpoints.step_dirs(tmp_path / "all")] == ["checkpoint-5", "checkpoint-10", "checkpoint-15"]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    run(tmp_path / "full", save_every_steps=3)
    cut, _ = run(tmp_path / "cut", save_every_steps=3, stop_after_steps=7)
    assert cut.state.stop_reason == "stop_after_steps" and not cut.state.finished and cut.state.step == 7
    assert os.readlink(tmp_path / "cut" / "last") == "checkpoint-7"
    resumed, _ = run(tmp_path / "cut", resume=True, save_every_steps=3)
    assert resumed.state.step == 15 and resumed.state.finished
    a = load_file(tmp_path / "full" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train_records(tmp_path / "full") == train_records(tmp_path / "cut")


def test_patience_stops_and_a_resumed_run_stays_stopped(tmp_path):
    engine, client = run(tmp_path, epochs=20, patience=2, select_metric="score", select_mode="max",
                         client=Toy(scores=[0.1, 0.3, 0.2, 0.25, 0.9]))
    st = engine.state
    assert st.stop_reason == "early_stopping" and st.step == 20 and st.best_metric == 0.3 and st.best_epoch == 2.0
    assert [m["score"] for m in client.best_seen] == [0.1, 0.3]
    again, client2 = run(tmp_path, resume=True, epochs=20, patience=2, select_metric="score", select_mode="max")
    assert again.state.step == 20 and client2.evals == 0


def test_limits_budget_and_no_run_folder(tmp_path):
    engine, client = run(None, epochs=None, max_steps=7)
    assert engine.state.stop_reason == "max_steps" and engine.state.step == 7
    assert client.evals == 2  # the epoch-1 end and the stop between evaluations
    engine, _ = run(tmp_path, epochs=100, time_budget_minutes=1e-9)
    assert engine.state.stop_reason == "time_budget" and engine.state.step == 1 and not engine.state.finished
    # the budget stop is resumable under a larger limit
    more, _ = run(tmp_path, resume=True, epochs=1)
    assert more.state.stop_reason == "epochs" and more.state.step == 5
    with pytest.raises(ValueError, match="select_mode"):
        LoopConfig(select_mode="up")


def test_a_dangling_last_link_is_repaired_from_the_moved_aside_folder(tmp_path):
    run(tmp_path, epochs=1)
    target = tmp_path / "checkpoint-5"
    os.replace(target, tmp_path / ".checkpoint-5.old")  # stopped in the middle of atomic_dir
    assert checkpoints.last_dir(tmp_path) == tmp_path / "last" and target.is_dir()


def _legacy(tmp_path: Path, layout: str) -> Path:
    """A run folder as an earlier version wrote it, from a new run's checkpoint."""
    run_dir = tmp_path / layout
    run(run_dir, epochs=None, max_steps=5, stop_after_steps=5)  # an epoch end: 5 batches
    new = checkpoints.last_dir(run_dir).resolve()
    loop = json.loads((new / "trainer_state.json").read_text())
    old = run_dir / ("checkpoints/last" if layout == "generator" else "last")
    os.unlink(run_dir / "last")
    old.parent.mkdir(parents=True, exist_ok=True)
    os.replace(new, old)
    if layout == "baselines":
        (old / "trainer_state.json").unlink()
        state = {"epoch": loop["epoch"], "batch": loop["batch_in_epoch"], "step": loop["step"], "elapsed": 1.0,
                 "cpu_elapsed": 1.0, "best": -1.0, "best_epoch": 0.0, "best_step": 0, "bad_evals": 0,
                 "last_eval_step": -1, "early_stopped": False, "history": []}
        (old / "state.json").write_text(json.dumps({"state": state, "train_config": {}, "run_config": {"m": 1},
                                                    "world_size": 1}))
    elif layout == "quantizer":
        (old / "trainer_state.json").write_text(json.dumps({"epoch": 1, "step": 5, "best_value": float("inf"),
                                                            "best_epoch": 0}))
    else:
        (old / "trainer_state.json").write_text(json.dumps({k: v for k, v in loop.items() if k not in ("format", "history")}))
    return run_dir


@pytest.mark.parametrize("layout", ["generator", "baselines", "quantizer"])
def test_earlier_layouts_are_refused_with_the_command_and_upgrade_to_a_resumable_run(tmp_path, layout):
    run(tmp_path / "full", epochs=None, max_steps=8)
    run_dir = _legacy(tmp_path, layout)
    with pytest.raises(checkpoints.LegacyCheckpointError, match="python -m genrec.utils.checkpoints upgrade"):
        checkpoints.last_dir(run_dir)
    assert checkpoints.main(["upgrade", str(run_dir)]) == 0
    last = checkpoints.last_dir(run_dir)
    assert last is not None and os.readlink(run_dir / "last") == "checkpoint-5"
    assert not (run_dir / "checkpoints").exists() and not (last / "state.json").exists()
    state = LoopState.from_json(json.loads((last / "trainer_state.json").read_text()))
    assert state.step == 5 and state.epoch == 1 and state.batch_in_epoch == 0
    resumed, _ = run(run_dir, resume=True, epochs=None, max_steps=8)
    assert resumed.state.step == 8
    a = load_file(tmp_path / "full" / "last" / "model.safetensors")
    b = load_file(run_dir / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoints.main(["upgrade", str(run_dir)]) == 2  # nothing left to upgrade
