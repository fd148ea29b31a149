"""The training loop: exact gradient accumulation, resume, run folder, bad input (tiny preset, CPU)."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from conftest import free_port

from genrec.data import codes_to_json, format_code, load_inter_json
from genrec.data_pipeline import collate
from genrec.finetune import main as finetune_main
from genrec.model import build_model
from genrec.pretrain import main as pretrain_main
from genrec.tokenizer import VocabConfig, build_tokenizer
from genrec.recipes import available as available_recipes
from genrec.tasks import TASKS
from genrec.training import Trainer, default_config, resolve_precision, train

REPO = Path(__file__).resolve().parents[2]


def _write_codes(folder, name, num_items, text=True, image=True, seed=0):
    rng = np.random.default_rng(seed)
    if text:
        codes = [format_code([*rng.integers(0, 6, size=3), i % 3], "text") for i in range(num_items)]
        codes[5] = codes[9]  # one shared code, so dedup makes text targets longer than image ones
        (folder / f"{name}.index_lemb.json").write_text(json.dumps(codes_to_json(codes)))
    if image:
        codes = [format_code([i % 7, i // 7, 1, 2], "image") for i in range(num_items)]
        (folder / f"{name}.index_vitemb.json").write_text(json.dumps(codes_to_json(codes)))


@pytest.fixture(scope="module")
def root(synthetic_root, tmp_path_factory):
    """Synthetic (text+image codes), NoImage (text codes only) and Short (no training prefix)."""
    out = tmp_path_factory.mktemp("train_data")
    shutil.copytree(synthetic_root / "Synthetic", out / "Synthetic")
    _write_codes(out / "Synthetic", "Synthetic", 64)
    (out / "NoImage").mkdir()
    shutil.copy(synthetic_root / "Synthetic" / "Synthetic.inter.json", out / "NoImage" / "NoImage.inter.json")
    _write_codes(out / "NoImage", "NoImage", 64, image=False, seed=1)
    (out / "Short").mkdir()
    _, seqs = load_inter_json(synthetic_root / "Synthetic" / "Synthetic.inter.json")
    (out / "Short" / "Short.inter.json").write_text(json.dumps({str(u): s[:3] for u, s in enumerate(seqs)}))
    shutil.copy(synthetic_root / "Synthetic" / "Synthetic.item.json", out / "Short" / "Short.item.json")
    _write_codes(out / "Short", "Short", 64)
    return out


def _cfg(root, tmp_path, mode="finetune", **kw):
    base = dict(datasets=["Synthetic"], data_root=str(root), output_dir=str(tmp_path / "log"), preset="tiny",
                tasks=["seqrec", "seqimage", "fusionseqrec"], batch_size=128, micro_batch_size=128, num_threads=1,
                progress=False, cache_dir="none", select_metric="valid_loss", valid_users=60, eval_users=20,
                eval_beams=5, log_every_steps=1, lr=2e-3)
    return default_config(mode, **{**base, **kw})


def _args(cfg_kw: dict) -> list[str]:
    out = []
    for k, v in cfg_kw.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            out += [flag, ",".join(v) if isinstance(v, list) else str(v)]
    return out


def _cli_base(root, tmp_path):
    return dict(data_root=str(root), output_dir=str(tmp_path / "log"), preset="tiny", batch_size=128,
                micro_batch_size=128, num_threads=1, progress=False, cache_dir="none", select_metric="valid_loss",
                valid_users=60, eval_users=20, eval_beams=5, log_every_steps=1)


def _train_records(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if r["type"] == "train"}


# -- exact gradient accumulation -------------------------------------------------------------------
def test_loss_and_update_under_gradient_accumulation_equal_one_big_batch(root, tmp_path):
    results = {}
    for micro in (128, 48, 7):
        tr = Trainer(_cfg(root, tmp_path, run=f"ga{micro}", micro_batch_size=micro, dropout=0.0, max_steps=1,
                          tasks=["seqrec", "seqimage", "item2image"], forward_cost_tokens=1e9))
        plan = tr._epoch_batches(0)
        idx = plan.batches[0]
        lengths = tr.trainset.source_lengths(plan.choice)
        n_tokens = tr.trainset.target_tokens(idx, plan.choice)
        micro_batches = tr.micro_batches(idx, lengths)
        if micro == 128:
            # our normalisation equals the model's own token-mean loss on the whole batch
            srcs, tgts = tr.trainset.examples(idx, plan.choice)
            batch = collate(srcs, tgts)
            with torch.no_grad():
                hf_loss = tr.model(**batch).loss.item()
        else:
            # what a mean of micro-batch means would report (the post-4.45 accumulation bug)
            with torch.no_grad():
                means = []
                for mb in micro_batches:
                    srcs, tgts = tr.trainset.examples(mb, plan.choice)
                    means.append(tr.model(**collate(srcs, tgts)).loss.item())
            mean_of_means = float(np.mean(means))
        loss_sum, _ = tr._step(idx, plan.choice, lengths)
        results[micro] = (loss_sum.item() / n_tokens, {k: v.detach().clone() for k, v in tr.model.state_dict().items()},
                          len(micro_batches), idx)
        if micro == 128:
            assert results[128][0] == pytest.approx(hf_loss, rel=1e-5)
        else:
            assert abs(mean_of_means - results[128][0]) > 1e-4  # the test would catch a mean of means
    ref_loss, ref_params, n_micro, ref_idx = results[128]
    assert n_micro == 1
    for micro in (48, 7):
        loss, params, n, idx = results[micro]
        assert n > 1 and np.array_equal(idx, ref_idx)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        for k in ref_params:
            torch.testing.assert_close(params[k], ref_params[k], rtol=1e-4, atol=1e-6)


# -- resume ----------------------------------------------------------------------------------------
def test_resume_after_interrupt_equals_an_uninterrupted_run(root, tmp_path, capsys):
    common = {**_cli_base(root, tmp_path), "dataset": "Synthetic", "tasks": ["seqrec", "fusionseqrec", "item2image"],
              "batch_size": 256, "micro_batch_size": 100, "max_steps": 14, "save_every_steps": 4, "seed": 3}
    assert finetune_main(_args({**common, "run": "full"})) == 0
    assert finetune_main(_args({**common, "run": "cut", "stop_after_steps": 6})) == 0
    cut = tmp_path / "log" / "cut"
    state = json.loads((cut / "last" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["stop_reason"] == "stop_after_steps" and not state["finished"]
    # resume from the checkpoint: the saved config is reused, only --stop-after-steps is reset
    assert finetune_main(["--run", "cut", "--output-dir", str(tmp_path / "log"), "--resume", "--stop-after-steps", "0"]) == 0
    full = tmp_path / "log" / "full"
    a = load_file(full / "last" / "model.safetensors")
    b = load_file(cut / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = _train_records(full), _train_records(cut)
    assert sorted(la) == sorted(lb) == list(range(1, 15))
    assert la == lb
    steps_per_epoch = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    assert steps_per_epoch["stop_reason"] == "max_steps"
    # the epoch boundary (eval + best/) was crossed by both
    for run in (full, cut):
        best = json.loads((run / "best" / "trainer_state.json").read_text())
        assert best["metric"] == "valid_loss" and best["step"] >= 1
    assert torch.equal(load_file(full / "best" / "model.safetensors")["shared.weight"],
                       load_file(cut / "best" / "model.safetensors")["shared.weight"])



def test_a_run_folder_of_the_earlier_pickled_format_still_resumes(root, tmp_path):
    # checkpoints written before the one training-state format held optimizer.pt, scheduler.pt and
    # rng_state.pt; such a run resumes to the same weights as one never interrupted
    from genrec.utils.train_state import _rng_join

    common = {**_cli_base(root, tmp_path), "dataset": "Synthetic", "tasks": ["seqrec"], "batch_size": 256,
              "micro_batch_size": 100, "max_steps": 8, "save_every_steps": 4, "seed": 5}
    assert finetune_main(_args({**common, "run": "full"})) == 0
    assert finetune_main(_args({**common, "run": "old", "stop_after_steps": 4})) == 0
    last = tmp_path / "log" / "old" / "last"
    tensors = load_file(last / "optimizer.safetensors")
    saved = json.loads((last / "training_state.json").read_text())
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    groups = [{**g, "betas": tuple(g["betas"])} for g in saved["optimizer"]["param_groups"]]
    torch.save({"state": state, "param_groups": groups}, last / "optimizer.pt")
    rngs = _rng_join(tensors, saved["rng"])
    torch.save(saved["scheduler"], last / "scheduler.pt")
    torch.save(rngs, last / "rng_state.pt")
    (last / "optimizer.safetensors").unlink()
    (last / "training_state.json").unlink()
    assert finetune_main(["--run", "old", "--output-dir", str(tmp_path / "log"), "--resume", "--stop-after-steps", "0"]) == 0
    a = load_file(tmp_path / "log" / "full" / "last" / "model.safetensors")
    b = load_file(last / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (last / "training_state.json").is_file()  # the next checkpoint is in the new format


# -- run folder, init, budgets -------------------------------------------------------------------------
def test_pretrain_then_finetune_from_it(root, tmp_path, capsys):
    base = _cli_base(root, tmp_path)
    assert pretrain_main(_args({**base, "datasets": ["Synthetic", "NoImage"], "tasks": ["seqrec", "seqimage"],
                                "run": "pre", "max_steps": 4})) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pre = tmp_path / "log" / "pre"
    cfg = json.loads((pre / "config.json").read_text())
    assert cfg["datasets"] == ["Synthetic", "NoImage"] and cfg["preset"] == "tiny" and cfg["max_history"] == 20
    assert cfg["dedup_codes"] is True and cfg["lr"] == 1e-3 and cfg["scheduler"] == "constant"
    for f in ("tokenizer/tokenizer.json", "best/model.safetensors", "best/trainer_state.json", "last/optimizer.safetensors",
              "last/training_state.json", "last/model.safetensors", "metrics.jsonl", "curve.png"):
        assert (pre / f).is_file(), f
    assert summary["step"] == 4 and summary["world_size"] == 1
    assert finetune_main(_args({**base, "dataset": "Synthetic", "init": str(pre), "run": "fine", "max_steps": 3,
                                "tasks": ["seqrec", "seqimage", "item2image", "image2item", "fusionseqrec"]})) == 0
    fine = json.loads((tmp_path / "log" / "fine" / "config.json").read_text())
    assert fine["init"] == str(pre) and fine["preset"] == "tiny"
    records = [json.loads(x) for x in (tmp_path / "log" / "fine" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert evals and {"valid_loss/Synthetic/seqrec", "valid_loss/Synthetic/fusionseqrec"} <= set(evals[-1])


def test_time_budget_stops_with_a_resumable_checkpoint(root, tmp_path):
    out = train(_cfg(root, tmp_path, run="budget", time_budget_minutes=1e-5, epochs=50))
    assert out["stop_reason"] == "time_budget" and out["step"] == 1
    run = tmp_path / "log" / "budget"
    assert (run / "best" / "model.safetensors").is_file()
    assert not json.loads((run / "last" / "trainer_state.json").read_text())["finished"]


def test_without_validation_best_is_the_final_model_and_nothing_is_reselected(root, tmp_path, caplog):
    """eval_every_epochs=0 (a decaying schedule's end is the model wanted): best/ holds the last weights,
    no metric picks among checkpoints, and no warning claims a fallback selection."""
    from genrec.model import load_model

    with caplog.at_level(logging.WARNING, logger="genrec.training"):
        tr = Trainer(_cfg(root, tmp_path, run="noval", select_metric="ndcg@10", epochs=2, eval_every_epochs=0))
        out = tr.fit()
    assert out["stop_reason"] == "epochs" and out["best_metric"] is None
    assert not [r for r in caplog.records if "selecting the best checkpoint" in r.getMessage()]
    run = tmp_path / "log" / "noval"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["type"] == "eval"]
    best, last = load_model(run / "best").state_dict(), load_model(run / "last").state_dict()
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
    tr.run_lock.release()


def test_weight_average_is_what_is_evaluated_kept_as_best_and_resumed(root, tmp_path):
    from genrec.model import load_model

    tr = Trainer(_cfg(root, tmp_path, run="ema", ema_decay=0.9, max_steps=6, eval_every_steps=3,
                      eval_every_epochs=0))
    out = tr.fit()
    assert out["step"] == 6 and tr.ema.averaged.n_averaged == 6
    run = tmp_path / "log" / "ema"
    raw = {k: v.clone() for k, v in tr.acc.unwrap_model(tr.model).state_dict().items()}
    avg = tr.ema.module.state_dict()
    name = next(k for k in raw if k.endswith("wo.weight"))
    assert not torch.allclose(raw[name], avg[name])  # the average lags the raw weights
    # the loss still falls at step 6, so the best folder holds that step's average: what was evaluated
    assert json.loads((run / "best" / "trainer_state.json").read_text())["step"] == 6
    assert torch.allclose(load_model(run / "best").state_dict()[name], avg[name])
    last = run / "last"
    assert (last / "ema.safetensors").is_file()
    assert torch.allclose(load_model(last).state_dict()[name], raw[name])
    tr.run_lock.release()
    # resume restores the average and its update count beside the raw weights
    tr2 = Trainer(_cfg(root, tmp_path, run="ema", ema_decay=0.9, max_steps=8, eval_every_steps=3,
                       eval_every_epochs=0), resume=True)
    assert tr2.ema.averaged.n_averaged == 6 and torch.allclose(tr2.ema.module.state_dict()[name], avg[name])
    assert tr2.fit()["step"] == 8 and tr2.ema.averaged.n_averaged == 8
    tr2.run_lock.release()
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(_cfg(root, tmp_path, run="ema2", ema_decay=1.0))


def test_dropout_free_start_switches_dropout_on_at_its_minute(root, tmp_path):
    from genrec.utils.engine import LoopState

    tr = Trainer(_cfg(root, tmp_path, run="dfree", dropout=0.2, dropout_free_minutes=1.0, max_steps=2))
    drops = [m for m in tr.model.modules() if isinstance(m, torch.nn.Dropout)]
    tr._set_dropout(LoopState(train_seconds=59.0))
    assert drops and all(m.p == 0.0 for m in drops)
    tr._set_dropout(LoopState(train_seconds=61.0))
    assert all(m.p == pytest.approx(0.2) for m in drops)
    assert train(_cfg(root, tmp_path, run="dfree2", dropout_free_minutes=1e-6, max_steps=2))["step"] == 2
    with pytest.raises(ValueError, match="dropout_free_minutes"):
        Trainer(_cfg(root, tmp_path, run="dfree3", dropout_free_minutes=-1.0))


def _dropout_rates(tr) -> set[float]:
    return {round(m.p, 6) for m in tr.model.modules() if isinstance(m, torch.nn.Dropout)}


def test_dropout_free_under_epochs_decides_once_on_the_first_epochs_pace(root, tmp_path):
    from genrec.utils.engine import LoopState

    # a 60-minute horizon at 2 s an epoch holds 1,800 epochs
    tr = Trainer(_cfg(root, tmp_path, run="dfe", dropout=0.2, dropout_free_under_epochs=2000.0,
                      time_budget_minutes=60.0, budget_clock="wall", max_steps=2))
    tr.on_epoch_start(0, LoopState())
    assert _dropout_rates(tr) == {0.0} and tr._dropout_on is None  # the first epoch runs without
    tr.on_epoch_start(1, LoopState(epoch=1, train_seconds=2.0))
    assert _dropout_rates(tr) == {0.0} and tr._dropout_on is False
    tr.on_epoch_start(2, LoopState(epoch=2, train_seconds=2.5))  # a faster pace later changes nothing
    assert _dropout_rates(tr) == {0.0} and tr.checkpoint_meta() == {"dropout_on": False}
    tr.run_lock.release()
    # the decay's horizon, not the budget, when both are set: 10 minutes at 0.5 s an epoch holds 1,200
    tr = Trainer(_cfg(root, tmp_path, run="dfe2", dropout=0.2, dropout_free_under_epochs=1000.0,
                      time_budget_minutes=1.0, anneal_minutes=10.0, scheduler="linear", budget_clock="wall"))
    tr.on_epoch_start(1, LoopState(epoch=1, train_seconds=0.5))
    assert _dropout_rates(tr) == {0.2} and tr.checkpoint_meta() == {"dropout_on": True}
    tr.run_lock.release()


def test_dropout_free_under_epochs_keeps_its_decision_across_a_resume(root, tmp_path):
    kw = dict(run="dfer", dropout=0.2, dropout_free_under_epochs=1.0, time_budget_minutes=600.0,
              save_every_steps=1, eval_every_epochs=0, patience=0)
    probe = Trainer(_cfg(root, tmp_path, max_steps=1, **{**kw, "run": "dfer-probe"}))
    steps = probe.engine.steps_per_epoch
    probe.run_lock.release()
    tr = Trainer(_cfg(root, tmp_path, max_steps=steps + 1, **kw))
    tr.fit()
    tr.run_lock.release()
    assert _dropout_rates(tr) == {0.2}  # any real pace gives 600 minutes more than one epoch
    state = tmp_path / "log" / "dfer" / "last" / "trainer_state.json"
    saved = json.loads(state.read_text())
    assert saved["dropout_on"] is True
    # a resume follows the saved decision, not a new estimate
    state.write_text(json.dumps({**saved, "dropout_on": False}))
    tr2 = Trainer(_cfg(root, tmp_path, max_steps=steps + 2, **kw), resume=True)
    assert _dropout_rates(tr2) == {0.0}
    tr2.fit()
    tr2.run_lock.release()
    assert _dropout_rates(tr2) == {0.0}


def test_dropout_free_under_epochs_needs_a_horizon_and_no_second_rule(root, tmp_path):
    with pytest.raises(ValueError, match="dropout_free_under_epochs compares"):
        Trainer(_cfg(root, tmp_path, run="dfe3", dropout_free_under_epochs=60.0))
    with pytest.raises(ValueError, match="give one"):
        Trainer(_cfg(root, tmp_path, run="dfe4", dropout_free_under_epochs=60.0, dropout_free_minutes=1.0,
                     time_budget_minutes=5.0))
    with pytest.raises(ValueError, match="must be >= 0"):
        Trainer(_cfg(root, tmp_path, run="dfe5", dropout_free_under_epochs=-1.0))


def test_anneal_lays_the_decay_over_the_clock_not_the_steps(root, tmp_path):
    tr = Trainer(_cfg(root, tmp_path, run="anneal", scheduler="cosine", anneal_minutes=10.0, warmup_epochs=0.0,
                      warmup_ratio=0.0, epochs=100_000))
    assert tr._scheduled_lr(5) == pytest.approx(1.0)  # nothing of the budget used yet
    tr.anneal_progress = 0.5
    assert tr._scheduled_lr(5) == pytest.approx(0.5)
    tr.anneal_progress = 1.7  # past the horizon: stays at the floor, never climbs back
    assert tr._scheduled_lr(5) == pytest.approx(0.0)
    # a horizon far shorter than the run: the rate falls to zero after a few steps of 50 epochs
    out = train(_cfg(root, tmp_path, run="anneal2", scheduler="cosine", anneal_minutes=1e-4, warmup_epochs=0.0,
                     warmup_ratio=0.0, max_steps=30))
    rows = [json.loads(x) for x in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    lrs = [r["lr"] for r in rows if r["type"] == "train"]
    assert lrs[0] > 0 and lrs[-1] == 0.0 and all(a >= b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(ValueError, match="scheduler is constant"):
        Trainer(_cfg(root, tmp_path, run="anneal3", scheduler="constant", anneal_minutes=5.0))


def test_decay_share_holds_the_peak_rate_until_the_last_share_of_the_horizon(root, tmp_path):
    # over the clock: constant for the first 80% of the budget, then linear to zero
    tr = Trainer(_cfg(root, tmp_path, run="wsd", scheduler="linear", anneal_minutes=10.0, decay_share=0.2,
                      warmup_epochs=0.0, warmup_ratio=0.0, epochs=100_000))
    for progress, factor in [(0.0, 1.0), (0.5, 1.0), (0.8, 1.0), (0.9, 0.5), (1.0, 0.0), (1.3, 0.0)]:
        tr.anneal_progress = progress
        assert tr._scheduled_lr(5) == pytest.approx(factor), progress
    # over the steps: the same shape laid over max_steps
    out = train(_cfg(root, tmp_path, run="wsd2", scheduler="linear", decay_share=0.5, warmup_epochs=0.0,
                     warmup_ratio=0.0, max_steps=10, lr=1e-3))
    rows = [json.loads(x) for x in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    lrs = [r["lr"] for r in rows if r["type"] == "train"]
    assert lrs[:5] == pytest.approx([1e-3] * 5) and lrs[5:] == pytest.approx([8e-4, 6e-4, 4e-4, 2e-4, 0.0])
    # a budget horizon the step cap ends first: the decay follows the steps, as without the budget
    out = train(_cfg(root, tmp_path, run="wsd5", scheduler="linear", decay_share=0.5, warmup_epochs=0.0,
                     warmup_ratio=0.0, max_steps=10, lr=1e-3, anneal_minutes=600.0))
    rows = [json.loads(x) for x in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["lr"] for r in rows if r["type"] == "train"] == pytest.approx(lrs)
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="decay_share"):
            Trainer(_cfg(root, tmp_path, run="wsd3", scheduler="linear", decay_share=share))
    with pytest.raises(ValueError, match="scheduler is constant"):
        Trainer(_cfg(root, tmp_path, run="wsd4", scheduler="constant", decay_share=0.2))


def test_anneal_to_budget_decays_over_the_time_budget_and_needs_one(root, tmp_path, capsys):
    tr = Trainer(_cfg(root, tmp_path, run="atb", scheduler="linear", anneal_to_budget=True, time_budget_minutes=10.0,
                      decay_share=0.2, warmup_epochs=0.0, warmup_ratio=0.0, epochs=100_000))
    assert tr.anneal_minutes == 10.0
    for progress, factor in [(0.0, 1.0), (0.8, 1.0), (0.9, 0.5), (1.0, 0.0)]:
        tr.anneal_progress = progress
        assert tr._scheduled_lr(5) == pytest.approx(factor), progress
    # the horizon is the budget of this invocation: a run resumed with a larger budget decays over the new one
    assert Trainer(_cfg(root, tmp_path, run="atb-30", scheduler="linear", anneal_to_budget=True,
                        time_budget_minutes=30.0, epochs=100_000)).anneal_minutes == 30.0
    for kw, message in [({}, "none is set"), ({"time_budget_minutes": 5.0, "anneal_minutes": 5.0}, "give one"),
                        ({"time_budget_minutes": 5.0, "scheduler": "constant"}, "scheduler is constant")]:
        with pytest.raises(ValueError, match=message):
            Trainer(_cfg(root, tmp_path, run="atb2", **{"scheduler": "linear", "anneal_to_budget": True, **kw}))
    # the budget recipe carries it: from the command line, without a budget, a clear error before any work
    _bad(capsys, ["--recipe", "budget", "--data-root", str(root), "--output-dir", str(tmp_path / "log"),
                  "--run", "atb3"], "give --time-budget-minutes")
    assert not (tmp_path / "log" / "atb3").exists()


def test_early_stopping_counts_evaluations_without_improvement(root, tmp_path, monkeypatch):
    tr = Trainer(_cfg(root, tmp_path, run="es", patience=2, eval_every_steps=1, epochs=50))
    values = iter([3.0, 2.0, 2.5, 2.1, 1.0])
    monkeypatch.setattr(tr, "evaluate", lambda: {"valid_loss": next(values)})
    out = tr.fit()
    assert out["stop_reason"] == "early_stopping" and out["step"] == 4
    assert out["best_metric"] == 2.0 and out["best_step"] == 2


def test_precision_is_never_bf16_on_cpu():
    assert resolve_precision("auto", on_gpu=False) == "no"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision("bf16", on_gpu=False)


# -- bad input: one clear line, exit 2, before training ------------------------------------------------
def _bad(capsys, argv, match, mode=finetune_main):
    assert mode(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert match in err[-1] and "Traceback" not in "\n".join(err), err


def test_bad_input_is_rejected_before_training(root, tmp_path, capsys):
    base = _args(_cli_base(root, tmp_path)) + ["--max-steps", "1"]  # bounded, should a check fail
    _bad(capsys, base + ["--dataset", "Synthetic", "--tasks", "seqrec,seqrek"], "unknown task 'seqrek'")
    _bad(capsys, base + ["--dataset", "NoImage", "--tasks", "seqrec,item2image"], "item2image needs")
    _bad(capsys, base + ["--dataset", "Short", "--tasks", "seqrec"], "empty training set")
    _bad(capsys, base + ["--dataset", "Nope"], "dataset folder not found")
    _bad(capsys, base + ["--dataset", "Synthetic", "--mixed-precision", "bf16"], "needs a GPU")
    _bad(capsys, base + ["--run", "never", "--resume"], "no checkpoint")
    # an item without a code
    codes = json.loads((root / "Synthetic" / "Synthetic.index_lemb.json").read_text())
    del codes["7"]
    (tmp_path / "holes.json").write_text(json.dumps(codes))
    _bad(capsys, base + ["--dataset", "Synthetic", "--tasks", "seqrec", "--text-codes", str(tmp_path / "holes.json")],
         "have no code")
    # codes beyond the vocabulary (more codes per level than the tokenizer was built for)
    big = {k: [t.replace("<a_", "<a_30") if t.startswith("<a_") else t for t in v] for k, v in
           json.loads((root / "Synthetic" / "Synthetic.index_lemb.json").read_text()).items()}
    (tmp_path / "big.json").write_text(json.dumps(big))
    _bad(capsys, base + ["--dataset", "Synthetic", "--tasks", "seqrec", "--text-codes", str(tmp_path / "big.json")],
         "not in the tokenizer's vocabulary")
    # a pretrained checkpoint whose tokenizer is not the one the finetune builds
    other = build_tokenizer(VocabConfig(dedup_tokens=8))
    init = tmp_path / "other_run"
    build_model("tiny", other).save_pretrained(str(init / "best"))
    other.save_pretrained(str(init / "tokenizer"))
    _bad(capsys, base + ["--dataset", "Synthetic", "--init", str(init)], "differs from the one this run builds")
    assert not (tmp_path / "log").exists() or not any((tmp_path / "log").glob("*/checkpoints"))


def test_cli_error_is_one_line_with_exit_code_2(root, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "genrec" / "finetune.py"), "--data-root", str(root), "--dataset",
                           "Synthetic", "--tasks", "seqrec,nope", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["genrec.finetune: error: unknown task 'nope'; available: "
                                                "seqrec, seqimage, seqitem2image, seqimage2item, item2image, image2item, "
                                                "fusionseqrec, fgfusionseqrec"]


# -- two processes on CPU ---------------------------------------------------------------------------
def test_two_cpu_processes_give_the_one_process_loss_curve(root, tmp_path):
    """Same global batch: 1 process x 1 micro-batch vs 2 real distributed processes (gloo)."""
    args = _args({**_cli_base(root, tmp_path), "datasets": ["Synthetic"], "tasks": ["seqrec", "fusionseqrec"],
                  "batch_size": 96, "max_steps": 5, "dropout": 0.0, "eval_every_epochs": 0})
    env = {**__import__("os").environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    script = str(REPO / "genrec" / "pretrain.py")
    one = subprocess.run([sys.executable, script, *args, "--run", "one", "--micro-batch-size", "96"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    # the launch form that really starts two distributed CPU processes (see stack-notes)
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "--main_process_port", str(free_port()), script, *args,
                          "--run", "two", "--micro-batch-size", "24"], capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-2000:]
    summary = [json.loads(x) for x in two.stdout.splitlines() if x.startswith("{")]
    assert len(summary) == 1 and summary[0]["world_size"] == 2  # printed by the main process only
    assert json.loads(one.stdout.strip().splitlines()[-1])["world_size"] == 1
    la, lb = _train_records(tmp_path / "log" / "one"), _train_records(tmp_path / "log" / "two")
    assert sorted(la) == sorted(lb) == [1, 2, 3, 4, 5]
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=1e-4, abs=1e-5), (step, la, lb)
    a = load_file(tmp_path / "log" / "one" / "best" / "model.safetensors")
    b = load_file(tmp_path / "log" / "two" / "best" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)


# -- every epoch its own batch order; a kill -9 in a later epoch resumes bit for bit ---------------------
def test_each_epoch_trains_its_own_batch_order(root, tmp_path, monkeypatch):
    tr = Trainer(_cfg(root, tmp_path, run="epochs", epochs=3, eval_every_epochs=0, tasks=["seqrec", "fusionseqrec"]))
    seen: list[tuple[bytes, bytes]] = []
    step = tr._step
    monkeypatch.setattr(tr, "_step", lambda idx, choice, lengths: (seen.append((idx.tobytes(), choice.tobytes())),
                                                                  step(idx, choice, lengths))[1])
    tr.fit()
    per = tr.steps_per_epoch
    assert len(seen) == 3 * per
    for epoch in range(3):
        plan = tr._epoch_batches(epoch)
        assert [s[0] for s in seen[epoch * per:(epoch + 1) * per]] == [b.tobytes() for b in plan.batches]
        assert all(s[1] == plan.choice.tobytes() for s in seen[epoch * per:(epoch + 1) * per])
    assert seen[0] != seen[per]  # epoch 1 is not a replay of epoch 0


def test_kill_9_in_a_later_epoch_resumes_bit_for_bit(root, tmp_path):
    """A real process killed with SIGKILL after epoch 0; constant LR so the schedule ignores --epochs."""
    import os
    import signal
    import time

    log = tmp_path / "log"
    common = {**_cli_base(root, tmp_path), "dataset": "Synthetic", "tasks": ["seqrec", "fusionseqrec"], "seed": 5,
              "scheduler": "constant", "warmup_ratio": 0.0, "save_every_steps": 1, "eval_every_epochs": 0}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    script = [sys.executable, "-m", "genrec.finetune"]
    ref = subprocess.run(script + _args({**common, "run": "ref", "epochs": 3}), capture_output=True, text=True,
                         timeout=300, env=env, cwd=REPO)
    assert ref.returncode == 0, ref.stderr[-2000:]
    per_epoch = json.loads(ref.stdout.strip().splitlines()[-1])["step"] // 3
    assert per_epoch >= 2
    # the victim would train 1000 epochs; kill it once a checkpoint inside epoch 1 exists
    proc = subprocess.Popen(script + _args({**common, "run": "victim", "epochs": 1000}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    state_file = log / "victim" / "last" / "trainer_state.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            try:
                state = json.loads(state_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {"step": 0}
            if state["step"] > per_epoch:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the run wrote no checkpoint past epoch 0 in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = json.loads(state_file.read_text())["step"]
    assert per_epoch < killed_at < 3 * per_epoch
    resumed = subprocess.run(script + ["--run", "victim", "--output-dir", str(log), "--resume", "--epochs", "3"],
                             capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(log / "ref" / "last" / "model.safetensors")
    b = load_file(log / "victim" / "last" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _train_records(log / "ref") == _train_records(log / "victim")


# -- every generator variant trains an epoch and is evaluated the way it was trained ------------------
@pytest.mark.parametrize("objective,item_inputs", [("full", "tokens"), ("constrained", "tokens"),
                                                   ("full", "pooled"), ("constrained", "pooled")])
def test_variants_train_one_epoch_and_record_how_they_score(root, tmp_path, objective, item_inputs):
    from genrec.model import load_model

    out = train(_cfg(root, tmp_path, run="v", epochs=1, objective=objective, item_inputs=item_inputs,
                     tasks=["seqrec", "seqimage", "item2image", "fusionseqrec"], select_metric="ndcg@10"))
    assert out["stop_reason"] == "epochs" and out["best_metric"] is not None
    run = tmp_path / "log" / "v"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["objective"] == objective and cfg["item_inputs"] == item_inputs
    model = load_model(run / "best")
    assert model.config.genrec_objective == objective and model.item_inputs == item_inputs
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if r["type"] == "eval"][-1]
    assert np.isfinite(ev["valid_loss"]) and 0 <= ev["valid_NDCG@10"] <= 1


def test_constrained_loss_is_below_the_full_loss_of_the_same_model(root, tmp_path):
    """Renormalising over valid continuations can only raise each target's probability."""
    tr = Trainer(_cfg(root, tmp_path, run="cl", max_steps=1, objective="constrained"))
    plan = tr._epoch_batches(0)
    idx = plan.batches[0][:32]
    srcs, tgts = tr.trainset.examples(idx, plan.choice)
    batch = collate(srcs, tgts)
    keys = tr.trainset.target_keys(idx, plan.choice)
    with torch.no_grad():
        constrained = tr._forward_sum(tr.model, dict(batch), keys).item()
        tr.cfg.objective = "full"
        full = tr._forward_sum(tr.model, dict(batch), keys).item()
    assert 0 < constrained < full


# -- semantic initialisation from the quantizer's codebooks ----------------------------------------------
def _quantizer_ckpt(path, codebook_size=8, levels=4):
    from index.checkpoint import save_checkpoint
    from index.config import QuantizerConfig
    from index.quantizers import build_quantizer

    torch.manual_seed(0)
    q = build_quantizer(QuantizerConfig(levels=levels, codebook_size=codebook_size, code_dim=6), 16)
    for cb in q.rq.codebooks:
        cb.data.normal_()
    save_checkpoint(path, q, {"test": True})
    return q


def test_semantic_init_starts_code_tokens_from_the_codebooks(root, tmp_path):
    q = _quantizer_ckpt(tmp_path / "quant")
    tr = Trainer(_cfg(root, tmp_path, run="sem", max_steps=1, tasks=["seqrec"], text_codebooks=str(tmp_path / "quant")))
    emb = tr.model.get_input_embeddings().weight.detach()
    vocab = tr.tokenizer.get_vocab()
    for level, letter in enumerate("abcd"):
        rows = emb[[vocab[f"<{letter}_{i}>"] for i in range(8)]]
        book = q.rq.codebooks[level].detach()
        # a linear image of the codebook: pairwise inner products keep their order (up to the projection's noise)
        assert torch.corrcoef(torch.stack([(rows @ rows.T).flatten(), (book @ book.T).flatten()]))[0, 1] > 0.5
        assert rows.std().item() == pytest.approx(1.0, rel=0.35)
    # without the flag the same rows are plain random
    plain = Trainer(_cfg(root, tmp_path, run="plain", max_steps=1, tasks=["seqrec"])).model.get_input_embeddings().weight
    assert not torch.allclose(plain[vocab["<a_0>"]], emb[vocab["<a_0>"]])


def test_semantic_init_refuses_codebooks_that_do_not_fit_the_codes(root, tmp_path, capsys):
    _quantizer_ckpt(tmp_path / "small", codebook_size=4)   # the fixture's codes use indices up to 6
    _quantizer_ckpt(tmp_path / "three", levels=3)
    base = _args(_cli_base(root, tmp_path)) + ["--max-steps", "1", "--dataset", "Synthetic", "--tasks", "seqrec"]
    _bad(capsys, base + ["--text-codebooks", str(tmp_path / "small")], "does not fit a codebook of 4 codewords")
    _bad(capsys, base + ["--text-codebooks", str(tmp_path / "three")], "the codes have 5 levels, the quantizer 3 codebooks")
    _bad(capsys, base + ["--text-codebooks", str(tmp_path / "nothing")], "no quantizer weights")
    assert not any((tmp_path / "log").glob("*/checkpoints"))


# -- all-prefix training ---------------------------------------------------------------------------
def test_prefix_windows_cover_every_training_target_once(root, tmp_path):
    from genrec.prefix_training import PrefixTrainSet

    tr = Trainer(_cfg(root, tmp_path, run="pw", max_steps=1, tasks=["seqrec"], max_history=3))
    part = tr.data[0].train[0]
    windows = PrefixTrainSet([part], seed=0, max_history=3)
    got = sorted(tuple(r) for t in windows.tgts for r in t[:, :-1].tolist())
    want = sorted(tuple(r) for r in part.variants[0].tgt[:, :-1].tolist())
    assert got == want  # each per-sample target exactly once
    # each window's row j is the code of window item j + 2
    src, tgt = windows.srcs[0], windows.tgts[0]
    w = tgt.shape[1] - 1
    body = src[1:-1].reshape(-1, w)
    assert np.array_equal(tgt[:-1, :w], body[1:])


@pytest.mark.parametrize("objective", ["full", "constrained"])
def test_prefix_training_loss_equals_the_per_sample_loss_of_the_same_targets(root, tmp_path, objective):
    """One causal pass over a window gives every target the loss its own per-sample example would."""

    tr = Trainer(_cfg(root, tmp_path, run=f"pe{objective}", max_steps=1, tasks=["seqrec"], max_history=0,
                      item_inputs="pooled", prefix_training=True, objective=objective, dropout=0.0))
    ts = tr.trainset
    idx = np.arange(min(6, len(ts)))
    srcs, tgts = ts.examples(idx, ts.variant_choice(0))
    keys = ts.target_keys(idx, ts.variant_choice(0))
    with torch.no_grad():
        total = tr._prefix_forward_sum(tr.model, srcs, tgts, keys).item()
        ref = 0.0
        for s, t, key in zip(srcs, tgts, keys):
            w = t.shape[1] - 1
            items = s[1:-1].reshape(-1, w)
            for j in range(t.shape[0]):
                hist = np.concatenate([s[:1], items[:j + 1].reshape(-1), s[-1:]])
                batch = collate([hist], [t[j]])
                ref += tr._forward_sum(tr.model, batch, [key]).item()
    assert total == pytest.approx(ref, rel=1e-4)
    assert ts.target_tokens(idx, ts.variant_choice(0)) == sum(t.size for t in tgts)


def test_prefix_training_trains_and_is_refused_where_it_cannot_work(root, tmp_path, capsys):
    out = train(_cfg(root, tmp_path, run="pt", epochs=1, tasks=["seqrec", "seqimage"], item_inputs="pooled",
                     prefix_training=True, objective="constrained", select_metric="ndcg@10"))
    assert out["stop_reason"] == "epochs" and out["best_metric"] is not None
    base = _args(_cli_base(root, tmp_path)) + ["--max-steps", "1", "--dataset", "Synthetic", "--prefix-training"]
    _bad(capsys, base + ["--tasks", "seqrec"], "needs --item-inputs pooled")
    _bad(capsys, base + ["--tasks", "seqrec,fusionseqrec", "--item-inputs", "pooled"], "drop fusionseqrec")


def test_history_dropout_trains_and_is_refused_where_it_cannot_work(root, tmp_path, capsys):
    from genrec.model import load_model

    out = train(_cfg(root, tmp_path, run="hd", epochs=1, item_inputs="pooled", history_dropout=0.3,
                     objective="constrained"))
    assert out["stop_reason"] == "epochs" and np.isfinite(out["train_loss"])
    assert load_model(tmp_path / "log" / "hd" / "best").config.genrec_history_dropout == 0.3
    base = _args(_cli_base(root, tmp_path)) + ["--max-steps", "1", "--dataset", "Synthetic", "--tasks", "seqrec"]
    _bad(capsys, base + ["--history-dropout", "0.2"], "needs --item-inputs pooled")
    _bad(capsys, base + ["--item-inputs", "pooled", "--history-dropout", "1"], "must be in [0, 1)")
    _bad(capsys, base + ["--item-inputs", "pooled", "--prefix-training", "--history-dropout", "0.2"], "without --prefix-training")


def test_item_embeddings_train_and_are_refused_where_they_cannot_work(root, tmp_path, capsys):
    from genrec.model import load_model

    out = train(_cfg(root, tmp_path, run="ie", epochs=1, item_inputs="pooled", item_embeddings=True,
                     objective="constrained"))
    assert out["stop_reason"] == "epochs" and np.isfinite(out["train_loss"])
    model = load_model(tmp_path / "log" / "ie" / "best")
    codes = {m: json.loads((root / "Synthetic" / f"Synthetic.index_{f}.json").read_text())
             for m, f in (("text", "lemb"), ("image", "vitemb"))}
    assert model.config.genrec_item_embeddings == len(codes["text"]) + len(codes["image"])
    assert model.item_embed.weight[1:].abs().sum(1).gt(0).float().mean() > 0.5  # the items seen as inputs trained
    base = _args(_cli_base(root, tmp_path)) + ["--max-steps", "1", "--dataset", "Synthetic", "--tasks", "seqrec"]
    _bad(capsys, base + ["--item-embeddings"], "needs --item-inputs pooled")
    _bad(capsys, base + ["--item-inputs", "pooled", "--item-dropout", "0.5"], "needs a model with item embeddings")
    _bad(capsys, base + ["--item-inputs", "pooled", "--item-embeddings", "--item-dropout", "1"], "must be in [0, 1)")
    train(_cfg(root, tmp_path, run="plain", max_steps=1, item_inputs="pooled", tasks=["seqrec"]))
    _bad(capsys, base + ["--item-inputs", "pooled", "--item-embeddings", "--init", str(tmp_path / "log" / "plain")],
         "has no item embeddings")


# -- recipes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", available_recipes())
@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_trains_under_every_recipe(root, tmp_path, task, recipe):
    # follows the task registry and the checked-in recipes: what is added there is trained here
    from genrec.recipes import load_recipe

    kw = {**load_recipe(recipe, "finetune"), "datasets": ["Synthetic"], "data_root": str(root), "preset": "tiny",
          "tasks": [task], "output_dir": str(tmp_path / "log"), "run": "t", "max_steps": 2, "batch_size": 64,
          "micro_batch_size": 64, "eval_every_epochs": 0, "num_threads": 1, "progress": False, "cache_dir": "none"}
    if kw.get("anneal_to_budget"):  # a recipe that decays over the time budget needs one
        kw["time_budget_minutes"] = 60.0
    out = train(default_config("finetune", **kw))
    assert out["step"] == 2 and np.isfinite(out["train_loss"])
    cfg = json.loads((tmp_path / "log" / "t" / "config.json").read_text())
    assert cfg["tasks"] == [task] and cfg["objective"] == kw.get("objective", "full")


def test_recipes_load_in_order_defaults_recipe_flags(tmp_path):

    from genrec.training import build_parser, config_from_args

    ns = build_parser("finetune").parse_args(["--recipe", "cpu", "--lr", "1e-3"])
    cfg, _ = config_from_args("finetune", ns)
    assert cfg.recipe == "cpu" and cfg.objective == "constrained" and cfg.item_inputs == "pooled"
    assert cfg.preset == "small" and cfg.lr == 1e-3  # the flag wins over the recipe
    paper, _ = config_from_args("finetune", build_parser("finetune").parse_args(["--recipe", "paper"]))
    plain, _ = config_from_args("finetune", build_parser("finetune").parse_args([]))
    # the paper recipe is the published defaults (what scripts/finetune.sh used to spell out)
    assert {k: v for k, v in paper.to_json().items() if k != "recipe"} == \
        {k: v for k, v in plain.to_json().items() if k != "recipe"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[finetune]\nlearning_rate = 3\n')
    with pytest.raises(ValueError, match="unknown settings \\['learning_rate'\\]"):
        config_from_args("finetune", build_parser("finetune").parse_args(["--recipe", str(bad)]))
    with pytest.raises(ValueError, match="unknown recipe 'gpu9'"):
        config_from_args("finetune", build_parser("finetune").parse_args(["--recipe", "gpu9"]))


def test_a_text_only_dataset_trains_the_recipes_text_tasks_but_explicit_tasks_are_kept(root):
    from genrec.tasks import parse_tasks, resolve_tasks
    from genrec.training import build_parser, config_from_args

    args = ["--recipe", "cpu", "--dataset", "NoImage", "--data-root", str(root)]
    cfg, _ = config_from_args("finetune", build_parser("finetune").parse_args(args))
    assert cfg.tasks == ["seqrec"]  # seqimage, item2image, image2item and fusionseqrec need image codes
    both, _ = config_from_args("finetune", build_parser("finetune").parse_args([*args[:2], "--dataset", "Synthetic",
                                                                              "--data-root", str(root)]))
    assert both.tasks == ["seqrec", "seqimage", "item2image", "image2item", "fusionseqrec"]
    # asked for by name: not dropped, and the error says which tasks the codes allow
    explicit, _ = config_from_args("finetune", build_parser("finetune").parse_args([*args, "--tasks", "seqrec,seqimage"]))
    assert explicit.tasks == ["seqrec", "seqimage"]
    from genrec.data import load_dataset

    with pytest.raises(ValueError, match="--tasks seqrec$"):
        resolve_tasks(parse_tasks(explicit.tasks), [load_dataset(root, "NoImage")])


def test_distill_kl_is_zero_for_the_teacher_itself_and_ignores_invalid_tokens():
    from genrec.decoding import CodeTrie
    from genrec.objective import distill_kl_sum

    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    labels = torch.tensor([[1, 2, -100], [3, 4, 5]])
    assert float(distill_kl_sum(s, s, labels, None, None, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # full objective, by hand: KL of every labelled position at temperature 2
    keep = labels.reshape(-1) != -100
    lt, ls = (torch.log_softmax(x.reshape(-1, 7)[keep] / 2.0, -1) for x in (t, s))
    want = (lt.exp() * (lt - ls)).sum()
    assert float(distill_kl_sum(s, t, labels, None, None, 2.0)) == pytest.approx(float(want), rel=1e-5)
    # constrained: items (1,3) and (1,4) and (2,5); after token 1 only 3 and 4 may follow
    tries = {"k": CodeTrie.from_token_ids([[1, 3], [1, 4], [2, 5]])}
    lab = torch.tensor([[1, 3, 0], [1, 4, 0]])
    base = float(distill_kl_sum(s, t, lab, ["k", "k"], tries, 1.0))
    t2 = t.clone()
    t2[:, 0, 5] += 9.0  # token 5 cannot start a code
    t2[:, 1, 5] += 9.0  # nor follow token 1
    assert float(distill_kl_sum(s, t2, lab, ["k", "k"], tries, 1.0)) == pytest.approx(base, rel=1e-6)
    t2[:, 1, 3] += 1.0  # a valid continuation: the divergence moves
    assert float(distill_kl_sum(s, t2, lab, ["k", "k"], tries, 1.0)) != pytest.approx(base, rel=1e-6)


def test_distillation_trains_a_student_from_a_teacher_run(root, tmp_path, capsys):
    teacher = train(_cfg(root, tmp_path, run="teacher", epochs=1, objective="constrained"))
    hard = train(_cfg(root, tmp_path, run="hard", epochs=1, objective="constrained", max_steps=2))
    alpha0 = train(_cfg(root, tmp_path, run="a0", epochs=1, objective="constrained", max_steps=2,
                        distill_from=teacher["run_dir"], distill_alpha=0.0))
    assert _train_records(Path(alpha0["run_dir"])) == pytest.approx(_train_records(Path(hard["run_dir"])))
    for objective in ("constrained", "full"):
        out = train(_cfg(root, tmp_path, run=f"student-{objective}", epochs=1, objective=objective,
                         item_inputs="pooled", distill_from=teacher["run_dir"], distill_alpha=0.7, distill_temperature=3.0))
        losses = _train_records(Path(out["run_dir"]))
        assert out["stop_reason"] == "epochs" and all(np.isfinite(v) for v in losses.values())
        assert losses != _train_records(Path(hard["run_dir"]))
    with pytest.raises(ValueError, match="distill_alpha"):
        Trainer(_cfg(root, tmp_path, run="bad", distill_from=teacher["run_dir"], distill_alpha=1.5))
    with pytest.raises(FileNotFoundError, match="--distill-from"):
        Trainer(_cfg(root, tmp_path, run="bad2", distill_from=str(tmp_path / "nope")))


@pytest.mark.parametrize("item_inputs", ["tokens", "pooled"])
def test_stopping_the_decoder_at_the_last_level_leaves_the_constrained_loss_and_gradients_unchanged(
        root, tmp_path, monkeypatch, item_inputs):
    import genrec.training
    from genrec.data_pipeline import collate

    tr = Trainer(_cfg(root, tmp_path, run=f"trim-{item_inputs}", objective="constrained", item_inputs=item_inputs,
                      epochs=1))
    model = tr.model.eval()  # no dropout: the two forwards see the same network
    plan = tr._epoch_batches(0)
    idx = plan.batches[0]
    srcs, tgts = tr.trainset.examples(idx, plan.choice)
    keys = tr.trainset.target_keys(idx, plan.choice)
    assert len(set(keys)) > 1  # text and image targets: tries of their own depth
    pad = tr.tokenizer.pad_token_id
    seen_depths = []
    real_forward = type(model).forward

    def spy(self, *a, **k):
        seen_depths.append(k["decoder_input_ids"].shape[1])
        return real_forward(self, *a, **k)

    monkeypatch.setattr(type(model), "forward", spy)
    losses, grads = [], []
    for trim in (False, True):
        monkeypatch.setattr(genrec.training, "TRIM_END_POSITION", trim)
        model.zero_grad()
        loss = tr._forward_sum(model, collate(srcs, tgts, pad_id=pad, decoder_start_id=pad), keys)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    depth = max(tr.tries[k].levels for k in set(keys))
    assert seen_depths == [depth + 1, depth]  # </s> only in the untrimmed forward
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("objective", ["constrained", "full"])
def test_label_smoothing_raises_the_training_loss_only_and_trains_an_epoch(root, tmp_path, objective):
    """The smoothed term is the training loss; validation (model in eval mode) stays the plain likelihood."""
    from genrec.data_pipeline import collate

    tr = Trainer(_cfg(root, tmp_path, run=f"smooth-{objective}", objective=objective, item_inputs="pooled",
                      label_smoothing=0.1, dropout=0.0, epochs=1))
    plan = tr._epoch_batches(0)
    idx = plan.batches[0]
    srcs, tgts = tr.trainset.examples(idx, plan.choice)
    keys = tr.trainset.target_keys(idx, plan.choice)
    batch = collate(srcs, tgts, pad_id=tr.tokenizer.pad_token_id, decoder_start_id=tr.tokenizer.pad_token_id)
    with torch.no_grad():
        smoothed = tr._forward_sum(tr.model.train(), dict(batch), keys).item()
        plain = tr._forward_sum(tr.model.eval(), dict(batch), keys).item()
    assert smoothed > plain  # dropout 0: only the smoothing differs between the two modes
    out = tr.fit()
    assert out["step"] >= 1 and np.isfinite(out["train_loss"]) and np.isfinite(out["best_metric"])
    assert json.loads((tmp_path / "log" / f"smooth-{objective}" / "config.json").read_text())["label_smoothing"] == 0.1
    for eps in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            Trainer(_cfg(root, tmp_path, run=f"smooth-bad-{objective}", label_smoothing=eps))
