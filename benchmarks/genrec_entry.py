"""The generative recommender as a row of the results benchmark (``--models genrec``), registered
in the baselines' registry when this module is imported (``benchmarks/results.py`` does).

Trains the multi-task T5 (``genrec.training``, finetune mode, no pretraining) on one dataset under
the benchmark's budget, then decodes the test split with the trie-constrained beam search: text
(``seqrec``) always, image (``seqimage``) and late fusion when the dataset has image codes. The
row reports the fused metrics when there are image codes, else the text metrics; both single-modality
results are kept in the row's details.

Settings (``--set genrec.FIELD=VALUE``): see :class:`GenRecEntryConfig`. ``text_codes`` picks
another code file, which is how generators trained on different semantic IDs are compared with
the same recipe (``--suffix`` keeps one row per code file).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genrec.baselines.registry import register
from genrec.data import RecDataset

logger = logging.getLogger(__name__)


DEFAULT_RUNS_ROOT = Path("log") / "results-runs"


def runs_root(args: argparse.Namespace) -> Path:
    """Where the generator's runs are kept: ``--checkpoint-dir``, else ``log/results-runs/<start>``.

    The runs are kept (not trained in a temporary folder) so the model can be handed to
    ``genrec.recommend`` afterwards; one folder per invocation, because a run folder that already
    holds a checkpoint is refused by the training loop, so a rerun must not land in an older one.
    """
    given = getattr(args, "checkpoint_dir", None)
    if given:
        return Path(given)
    stamp = getattr(args, "_genrec_runs_stamp", None)
    if stamp is None:
        stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
        setattr(args, "_genrec_runs_stamp", stamp)
    return DEFAULT_RUNS_ROOT / stamp


@dataclass
class GenRecEntryConfig:
    """Defaults: the ``cpu`` recipe (genrec/configs/cpu.toml); ``recipe=paper`` trains the paper recipe
    with its own hyper-parameters (the fields below then only pick data, codes and evaluation)."""

    recipe: str = "cpu"
    preset: str = "small"           # the paper preset learns too slowly for a CPU budget of minutes
    tasks: str = "seqrec,seqimage,item2image,image2item,fusionseqrec"  # image tasks drop out without image codes
    text_codes: str = ""            # default: the dataset's own text code file
    image_codes: str = ""
    lr: float = 2e-3
    weight_decay: float = 0.01      # AdamW, not on norms
    batch_size: int = 256
    warmup_epochs: float = 0.1
    max_history: int = 20
    beams: int = 20
    eval_users: int = 1000          # validation NDCG@10 users for model selection
    eval_every_epochs: int = 1      # validate every N epochs (and at the end of a budget)
    select_metric: str = "ndcg@10"  # or valid_loss: keep the checkpoint of the lowest validation loss (all users)
    fusion: str = "auto"            # auto: rawprob under the constrained objective (item probabilities), else prob
    seed: int = 42
    objective: str = "constrained"  # or full (published): softmax over valid code continuations / the vocabulary
    item_inputs: str = "pooled"     # or tokens (published): one encoder position per history item / per code token
    prefix_training: bool = False   # every target of a user window in one causal pass (seqrec/seqimage only)
    text_codebooks: str = ""        # semantic init from this quantizer run (the one that produced text_codes)
    dropout: float = -1.0           # < 0: the preset's own (0.1)
    dropout_free_minutes: float = 0.0  # no dropout for the first M CPU/wall minutes of the budget clock
    ema_decay: float = 0.0          # evaluate an exponential moving average of the weights (0 = off)
    label_smoothing: float = 0.0    # training loss: share spread over the tokens the objective normalises over
    init: str = ""                  # start from this pretraining run (same code vocabulary; its preset wins)
    scheduler: str = "constant"     # or cosine / linear: decay after warmup, over `epochs`
    epochs: int = 0                 # 0: the caller's epoch cap (a decaying schedule needs a real horizon)
    anneal: str = "steps"           # or budget: the decay runs over the time budget, not over `epochs`
    decay_share: float = 1.0        # the decay runs over this last share of its horizon (0.2: warmup-stable-decay)
    distill_from: str = ""          # a teacher run (same code vocabulary): soft targets mixed into the loss
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5
    group_by_length: bool = False   # batches of similar history lengths (less padding, less random batches)
    item_embeddings: bool = False   # a learned input embedding per item on top of its pooled code embeddings
    item_dropout: float = 0.0       # with item_embeddings: share of training history items shown without theirs
    history_dropout: float = 0.0    # pooled inputs: share of training history items hidden from the encoder
    patience: int = 10              # stop after N validations without improvement (0: only the budget stops it)


def genrec_train_config(dataset: RecDataset, cfg: GenRecEntryConfig, budget_minutes: float, *, out_dir: Path,
                        run: str, epochs: int, threads: int, budget_clock: str = "wall",
                        anneal_minutes: float = 0.0):
    """The finetune-mode TrainConfig of the results entry (no pretraining) for one dataset.

    ``anneal_minutes``: the horizon of ``anneal = "budget"`` when it is not this call's budget (a
    run resumed from budget to budget decays over the last one)."""
    from genrec.tasks import dataset_codes, parse_tasks
    from genrec.training import default_config

    have = {"text"} | ({"image"} if cfg.image_codes or "image" in dataset_codes(dataset, dedup=False) else set())
    tasks = [t.name for t in parse_tasks(cfg.tasks) if set(t.modalities) <= have]
    if cfg.prefix_training:
        from genrec.prefix_training import PREFIX_TASKS

        tasks = [t for t in tasks if t in PREFIX_TASKS]
    if not tasks:
        raise ValueError(f"genrec on {dataset.name}: none of the tasks {cfg.tasks} fits its codes ({sorted(have)})")
    from genrec.recipes import load_recipe

    if cfg.anneal not in ("steps", "budget"):
        raise ValueError(f"genrec: unknown anneal {cfg.anneal!r}; choose steps or budget")
    horizon = 0.0
    if cfg.anneal == "budget":
        horizon = anneal_minutes or budget_minutes
        if horizon <= 0:
            raise ValueError("genrec: anneal=budget decays over the time budget, but no budget was given")
        if cfg.scheduler == "constant":
            raise ValueError("genrec: anneal=budget needs a decaying scheduler (cosine or linear), not constant")
    common = dict(datasets=[dataset.name], data_root=str(dataset.dir.parent), text_codes=cfg.text_codes or None,
                  image_codes=cfg.image_codes or None, output_dir=str(out_dir), run=run, seed=cfg.seed,
                  time_budget_minutes=budget_minutes if budget_minutes > 0 else 0.0, budget_clock=budget_clock,
                  eval_users=cfg.eval_users, eval_beams=cfg.beams, num_threads=threads, progress=False,
                  recipe=cfg.recipe, text_codebooks=cfg.text_codebooks or None, init=cfg.init or None,
                  distill_from=cfg.distill_from or None, distill_temperature=cfg.distill_temperature,
                  distill_alpha=cfg.distill_alpha)
    if cfg.recipe != "cpu":  # another recipe brings its own hyper-parameters
        recipe = load_recipe(cfg.recipe, "finetune")
        if recipe.get("prefix_training"):
            from genrec.prefix_training import PREFIX_TASKS

            tasks = [t for t in tasks if t in PREFIX_TASKS]
        if recipe.get("anneal_to_budget") and anneal_minutes:
            # a run resumed from budget to budget decays over the last budget, not over this call's
            recipe = {**recipe, "anneal_to_budget": False, "anneal_minutes": anneal_minutes}
        keep = [t for t in recipe.get("tasks", tasks) if t in tasks]
        return default_config("finetune", **{**recipe, **common, "tasks": keep or tasks,
                                             "epochs": epochs or recipe.get("epochs", 200)})
    return default_config(
        "finetune", **common, tasks=tasks, max_history=cfg.max_history, preset=cfg.preset, objective=cfg.objective,
        item_inputs=cfg.item_inputs, prefix_training=cfg.prefix_training, epochs=cfg.epochs or epochs,
        dropout=cfg.dropout if cfg.dropout >= 0 else None,
        dropout_free_minutes=cfg.dropout_free_minutes, ema_decay=cfg.ema_decay, label_smoothing=cfg.label_smoothing,
        batch_size=cfg.batch_size, micro_batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
        scheduler=cfg.scheduler, anneal_minutes=horizon, decay_share=cfg.decay_share, warmup_ratio=0.0,
        warmup_epochs=cfg.warmup_epochs, select_metric=cfg.select_metric,
        group_by_length=cfg.group_by_length, item_embeddings=cfg.item_embeddings, item_dropout=cfg.item_dropout,
        history_dropout=cfg.history_dropout,
        patience=cfg.patience, eval_every_epochs=cfg.eval_every_epochs)


def evaluate_genrec_run(run_dir: Path, dataset: RecDataset, cfg: GenRecEntryConfig, threads: int) -> dict[str, Any]:
    """Test metrics of a run's best checkpoint: text, image and fused (when the dataset has image codes)."""
    from genrec.evaluate import EvalConfig, read_predictions, run_evaluation
    from genrec.fusion import FusionConfig, fuse_predictions

    data_root = str(dataset.dir.parent)
    evals = {}
    for task in ("seqrec", "seqimage"):
        try:
            evals[task] = run_evaluation(EvalConfig(ckpt=str(run_dir), dataset=dataset.name, task=task,
                                                    beams=cfg.beams, data_root=data_root, num_threads=threads,
                                                    progress=False))
        except Exception as e:  # a dataset without image codes has no seqimage run
            if task == "seqrec":
                raise
            logger.info("genrec on %s: no image evaluation (%s)", dataset.name, e)
    rows = {"text": evals["seqrec"]["metrics"]}
    chosen = "text"
    if "seqimage" in evals:
        preds = {t: read_predictions(next(f for f in evals[t]["files"] if f.endswith(".predictions.jsonl")))
                 for t in evals}
        from genrec.fusion import rule_for_run

        rule = rule_for_run(run_dir) if cfg.fusion == "auto" else cfg.fusion
        fused, _ = fuse_predictions(preds["seqrec"], preds["seqimage"], FusionConfig(rule=rule))
        rows.update(fused)
        chosen = f"fused-{rule}"
    return {"metrics": {k: v for k, v in rows[chosen].items() if k != "users"}, "reported": chosen,
            "users": evals["seqrec"]["users"],
            "by_modality": {k: {m: v for m, v in r.items() if m != "users"} for k, r in rows.items()},
            "decode_users_per_second": {t: e["users_per_second"] for t, e in evals.items()}}


def run_genrec(dataset: RecDataset, budget_minutes: float, args: argparse.Namespace) -> dict[str, Any]:
    from genrec.baselines.features import NotApplicable
    from genrec.baselines.settings import apply_overrides, eval_protocol
    from genrec.training import train

    protocol = eval_protocol("genrec", args)
    if protocol != "full":
        # beam search returns a top-K list, not a score for every item, so the target cannot be
        # placed among sampled negatives; refuse before training rather than report full ranking
        raise NotApplicable(None, f"the generator is evaluated by beam search (full ranking only), not {protocol}")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's per-shard bar, once per checkpoint
    cfg = apply_overrides(GenRecEntryConfig(), "genrec", getattr(args, "set", None), strict=True)
    threads = getattr(args, "num_threads", None) or torch.get_num_threads()
    epochs = getattr(args, "epochs", None) or 200
    out_dir = runs_root(args) / dataset.name
    codes_tag = _codes_tag(cfg.text_codes, cfg.image_codes)
    tcfg = genrec_train_config(dataset, cfg, budget_minutes, out_dir=out_dir, run=f"genrec-{codes_tag}",
                               epochs=epochs, threads=threads, budget_clock=getattr(args, "budget_clock", None) or "wall")
    summary = train(tcfg)
    run_dir = Path(summary["run_dir"])
    ev = evaluate_genrec_run(run_dir, dataset, cfg, threads)
    chosen = ev["reported"]
    params = _count_params(run_dir)
    epochs, best_epoch = _epochs(run_dir, summary["best_step"])
    out: dict[str, Any] = dict(ev["metrics"])
    out.update(protocol="full", train_seconds=round(summary["train_seconds"], 1), params=params, users=ev["users"],
               epochs=epochs, best_epoch=best_epoch, steps=summary["step"], stop_reason=summary["stop_reason"],
               reported=chosen, by_modality=ev["by_modality"], decode_users_per_second=ev["decode_users_per_second"],
               model_config=dataclasses.asdict(cfg),
               train_config={**tcfg.to_json(), "budget_minutes": budget_minutes},
               note=f"T5 {cfg.preset} preset, tasks {','.join(tcfg.tasks)}, histories of {cfg.max_history} items, "
                    f"beam {cfg.beams}, {cfg.objective} objective, {cfg.item_inputs} inputs; reported: {chosen}")
    out["run_dir"] = str(run_dir)
    logger.info("genrec on %s: run kept in %s (python -m genrec.recommend --ckpt %s --dataset %s --data-root %s "
                "--history ...)", dataset.name, run_dir, run_dir, dataset.name, str(dataset.dir.parent))
    return out


def _codes_tag(text_codes: str, image_codes: str) -> str:
    """A run-folder tag that differs for every pair of code files: published code files often share a
    file name (``indexes/<method>/Scientific.index.json``), so the stem alone would reuse one run folder."""
    if not text_codes and not image_codes:
        return "default"
    parts = [f"{Path(p).parent.name}-{Path(p).stem}".replace(".", "-") for p in (text_codes, image_codes) if p]
    digest = hashlib.sha1("\0".join(str(Path(p).resolve()) for p in (text_codes, image_codes)).encode()).hexdigest()[:8]
    return "_".join(parts) + "-" + digest


def _epochs(run_dir: Path, best_step: int | None) -> tuple[float, float | None]:
    """Epochs trained and the epoch of the selected checkpoint, from the run's evaluation records."""
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    evals = [e for e in evals if e.get("type") == "eval"]
    if not evals:
        return 0.0, None
    best = next((e["epoch"] for e in evals if e["step"] == best_step), None)
    return round(float(evals[-1]["epoch"]), 2), None if best is None else round(float(best), 2)


def _count_params(run_dir: Path) -> int:
    from genrec.evaluation import load_run

    run = load_run(run_dir, device="cpu")
    return sum(p.numel() for p in run.model.parameters())


register("genrec", config=GenRecEntryConfig)(run_genrec)
