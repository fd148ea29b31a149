"""The one training loop behind ``genrec/pretrain.py`` and ``genrec/finetune.py`` (Hugging Face Accelerate).

An optimizer step consumes one *global batch* of ``batch_size`` examples, the same for any number
of processes and any micro-batch size: the batch is sorted by source length and cut into
micro-batches (dynamic padding wastes little), each process takes its share, and every
micro-batch's summed token cross-entropy is divided by the number of target tokens of the whole
global batch. Gradients are therefore exactly those of one big batch (not a mean of micro-batch
means, the gradient-accumulation bug the published code hit after transformers 4.45), and one
process with accumulation matches several processes.

Run folder ``<output_dir>/<run>/``: ``config.json``, ``tokenizer/``, ``best/`` (model +
``trainer_state.json``), ``checkpoint-<step>/`` with a ``last`` link (model, optimizer, scheduler,
step, RNG states, config; written atomically; ``--resume`` continues from it), ``metrics.jsonl``,
``curve.png``. The loop, stop policy, checkpoints and resume are the one engine's
(``genrec.utils.engine``); this module supplies the batches, the step and the evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from genrec.data.errors import DataError
from genrec.data_pipeline import (
    DatasetData, Encoded, Part, TrainSet, build_dataset_data, collate, default_cache_dir, shard_step,
)
from genrec.metrics import TABLE_KS
from genrec.tasks import get_task, parse_tasks, resolve_tasks
from genrec.tokenizer import RESERVED_TASK, VocabConfig, build_tokenizer, load_tokenizer, tokenizer_code_spec
from genrec.utils import checkpoints
from genrec.utils.engine import Client, Engine, LoopConfig, LoopState, StepOutput
from genrec.utils.io import atomic_dir, atomic_write_json
from genrec.utils.rng import seed_everything
from genrec.run_checks import code_fingerprints
from genrec.utils.runlock import claim_run_dir, released_on_exit

logger = logging.getLogger("genrec.training")

# Under the constrained objective, compute each target level's output columns only (|V_l| of V);
# False: the full output layer, then those columns (benchmarks/bench_step.py measures both).
LEVEL_OUTPUTS = True
# Under the constrained objective, the decoder stops at the last code level: the position after it has
# one allowed token (</s>, loss 0, distillation KL 0), and a causal decoder's earlier positions do not
# depend on it.
TRIM_END_POSITION = True

FINETUNE_TASKS = ["seqrec", "seqimage", "item2image", "image2item", "fusionseqrec"]
SCHEDULERS = {"cosine": "cosine", "constant": "constant_with_warmup", "linear": "linear"}
SELECT_METRICS = ("valid_loss", "ndcg@10")
PRECISIONS = ("auto", "no", "fp16", "bf16")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``config.json``. CLI flags override the mode defaults."""

    mode: str = field(default="finetune", metadata=_help("pretrain or finetune (set by the entry point)"))
    recipe: str = field(default="", metadata=_help("the named recipe (genrec/configs/<name>.toml) the run started from"))
    datasets: list[str] = field(default_factory=lambda: ["Synthetic"], metadata=_help("comma-separated dataset names"))
    data_root: str = field(default="data", metadata=_help("folder holding <dataset>/ folders"))
    text_codes: str | None = field(default=None, metadata=_help("explicit text code file (one dataset only)"))
    image_codes: str | None = field(default=None, metadata=_help("explicit image code file (one dataset only)"))
    tasks: list[str] = field(default_factory=lambda: list(FINETUNE_TASKS), metadata=_help("comma-separated task names"))
    max_history: int = field(default=20, metadata=_help("keep the most recent N history items (0 = all)"))
    dedup_codes: bool = field(default=True, metadata=_help("append a dedup token to codes shared by several items"))
    preset: str = field(default="paper", metadata=_help("model size: paper, medium, small or tiny (ignored with --init)"))
    objective: str = field(default="full", metadata=_help(
        "full: softmax over the whole vocabulary (published); constrained: over the tokens that continue a valid code"))
    text_codebooks: str | None = field(default=None, metadata=_help(
        "semantic init: start text code-token embeddings from this quantizer checkpoint's codebooks (index.train run folder)"))
    image_codebooks: str | None = field(default=None, metadata=_help("semantic init of image code tokens, likewise"))
    prefix_training: bool = field(default=False, metadata=_help(
        "train every target of a user window in one pass (causal item encoder; needs --item-inputs pooled, tasks seqrec/seqimage)"))
    item_inputs: str = field(default="tokens", metadata=_help(
        "tokens: every code token is an encoder position (published); pooled: one encoder position per history item"))
    item_embeddings: bool = field(default=False, metadata=_help(
        "also give every item a learned input embedding of its own, added to its pooled position (needs --item-inputs pooled)"))
    item_dropout: float = field(default=0.0, metadata=_help(
        "with --item-embeddings: probability that a training history item uses the shared unknown-item vector instead of its own"))
    history_dropout: float = field(default=0.0, metadata=_help(
        "with pooled inputs: probability that a training history item is hidden from the encoder (a random "
        "sub-history per example; an input keeps at least one item); 0 = off"))
    dropout: float | None = field(default=None, metadata=_help("override the model's dropout rate"))
    dropout_free_minutes: float = field(default=0.0, metadata=_help(
        "train without dropout for the first M minutes on the budget clock, then with the model's rate "
        "(no dropout learns fastest early, then overfits)"))
    dropout_free_under_epochs: float = field(default=0.0, metadata=_help(
        "train the first epoch without dropout, then estimate the epochs the run's horizon holds (the decay's "
        "horizon, else the time budget) at that epoch's pace: below this many, keep dropout off for the whole run; "
        "otherwise the model's rate from the second epoch on (no dropout wins when the budget covers few epochs "
        "and overfits when it covers many); 0 = off"))
    label_smoothing: float = field(default=0.0, metadata=_help(
        "training loss only: mix each target token with the uniform distribution over the tokens the objective "
        "normalises over (the valid next tokens under constrained, the vocabulary under full); 0 = off"))
    ema_decay: float = field(default=0.0, metadata=_help(
        "evaluate and keep as best an exponential moving average of the weights with this decay (0 = off; e.g. 0.999)"))
    init: str | None = field(default=None, metadata=_help("start from this run folder (log/<run>) or model folder"))
    distill_from: str | None = field(default=None, metadata=_help(
        "teacher run or model folder (same vocabulary): mix the hard loss with the KL divergence to its softened distribution"))
    distill_temperature: float = field(default=2.0, metadata=_help("softening temperature of the teacher and the student"))
    distill_alpha: float = field(default=0.5, metadata=_help("weight of the distillation term (1 - alpha on the hard loss)"))
    output_dir: str = field(default="log", metadata=_help("runs are written to <output_dir>/<run>/"))
    run: str | None = field(default=None, metadata=_help("run name (default: <mode>-<datasets>-<time>)"))
    seed: int = field(default=42, metadata=_help("seed of initialisation, batch order, fusion coins and dropout"))
    epochs: int = field(default=200, metadata=_help("number of epochs"))
    max_steps: int = field(default=0, metadata=_help("total optimizer steps; overrides epochs when > 0"))
    time_budget_minutes: float = field(default=0.0, metadata=_help(
        "stop (evaluate, checkpoint) once the run has trained this long in total (validation included; "
        "a resumed run counts its earlier time, so resuming with a larger budget continues the same run)"))
    budget_clock: str = field(default="wall", metadata=_help(
        "clock of --time-budget-minutes: wall, or cpu (this process's CPU time: budgets that other jobs on the machine do not shrink)"))
    stop_after_steps: int = field(default=0, metadata=_help("stop this invocation after N steps with a checkpoint, as if interrupted"))
    batch_size: int = field(default=1024, metadata=_help("examples per optimizer step, all processes and micro-batches together"))
    micro_batch_size: int = field(default=256, metadata=_help("most examples per forward pass per process (accumulation when smaller)"))
    forward_cost_tokens: float = field(default=0.0, metadata=_help(
        "fixed cost of one forward pass in padded tokens, used to cut length-sorted micro-batches "
        "(0 = auto: 1024 on CPU, 65536 on GPU; larger = fewer, more padded micro-batches)"))
    lr: float = field(default=5e-4, metadata=_help("peak learning rate"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay (not on norms)"))
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    adam_beta2: float = field(default=0.999, metadata=_help("AdamW beta2"))
    adam_eps: float = field(default=1e-8, metadata=_help("AdamW epsilon"))
    scheduler: str = field(default="cosine", metadata=_help("after warmup: cosine, constant or linear"))
    anneal_minutes: float = field(default=0.0, metadata=_help(
        "lay the cosine/linear decay over this many minutes of --budget-clock instead of over "
        "--epochs/--max-steps (0 = over steps); set it to the time budget to end the budget at the lowest rate"))
    anneal_to_budget: bool = field(default=False, metadata=_help(
        "lay the cosine/linear decay over --time-budget-minutes (a resumed run with a larger budget decays "
        "over the new one); needs a time budget, and is --anneal-minutes set to the budget"))
    decay_share: float = field(default=1.0, metadata=_help(
        "share of the decay horizon, at its end, over which the cosine/linear decay runs; the rate stays at "
        "--lr before it (1 = the whole horizon; 0.2 = warmup-stable-decay)"))
    warmup_ratio: float = field(default=0.01, metadata=_help("warmup as a share of all steps"))
    warmup_epochs: float = field(default=0.0, metadata=_help("warmup in epochs; overrides --warmup-ratio when > 0"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm (0 = off)"))
    mixed_precision: str = field(default="auto", metadata=_help("auto (bf16/fp16 on a GPU that has it, fp32 on CPU), no, fp16, bf16"))
    group_by_length: bool = field(default=False, metadata=_help("also group whole batches by length (HF-style); micro-batches are always length-sorted"))
    num_threads: int = field(default=0, metadata=_help("torch CPU threads (0 = torch's default)"))
    cpu: bool = field(default=False, metadata=_help("train on the CPU even when a GPU is present"))
    select_metric: str = field(default="ndcg@10", metadata=_help("keep the best checkpoint by valid_loss or ndcg@10"))
    patience: int = field(default=10, metadata=_help("stop after N evaluations without improvement (0 = never)"))
    eval_every_epochs: int = field(default=1, metadata=_help("evaluate every N epochs (0 = no evaluation)"))
    eval_every_steps: int = field(default=0, metadata=_help("also evaluate every N steps (0 = off)"))
    valid_users: int = field(default=0, metadata=_help("validation loss on this many users per dataset (0 = all)"))
    eval_users: int = field(default=1000, metadata=_help("validation NDCG@10 on this many users per dataset (0 = all)"))
    eval_tasks: list[str] = field(default_factory=list, metadata=_help("tasks scored by NDCG@10 (default: seqrec)"))
    eval_beams: int = field(default=20, metadata=_help("beam size of the validation NDCG@10"))
    eval_batch_size: int = field(default=256, metadata=_help("examples per forward pass in evaluation"))
    save_every_steps: int = field(default=0, metadata=_help("also checkpoint every N steps (0 = each epoch and at the end)"))
    log_every_steps: int = field(default=10, metadata=_help("log the training loss every N steps"))
    cache_dir: str | None = field(default="auto", metadata=_help("token cache folder: auto ($GENREC_CACHE or ~/.cache/genrec), a path, or none"))
    codes_per_level: int = field(default=256, metadata=_help("code tokens per level in the vocabulary"))
    dedup_tokens: int = field(default=64, metadata=_help("dedup tokens <e_k>/<E_k> in the vocabulary"))
    progress: bool = field(default=True, metadata=_help("show a progress bar (main process only)"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("ignoring unknown config keys %s", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})


MODES = ("pretrain", "finetune")
# the published method's hyper-parameters are the defaults of both modes: genrec/configs/paper.toml
DEFAULT_RECIPE = "paper"


def default_config(mode: str, **overrides) -> TrainConfig:
    from genrec.recipes import load_recipe

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return TrainConfig(**{"mode": mode, **load_recipe(DEFAULT_RECIPE, mode), **overrides})


# -- validation ------------------------------------------------------------------------------
def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError on settings that cannot work, before anything is loaded or written."""
    if cfg.mode not in MODES:
        raise ValueError(f"unknown mode {cfg.mode!r}")
    if not cfg.datasets:
        raise ValueError("no datasets given")
    if len(set(cfg.datasets)) != len(cfg.datasets):
        raise ValueError(f"a dataset is listed twice: {cfg.datasets}")
    if (cfg.text_codes or cfg.image_codes) and len(cfg.datasets) > 1:
        raise ValueError("--text-codes/--image-codes name one file, so they need exactly one dataset")
    parse_tasks(cfg.tasks)
    for name in cfg.eval_tasks:
        if name not in cfg.tasks:
            raise ValueError(f"eval task {name!r} is not one of the training tasks {cfg.tasks}")
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "micro_batch_size": cfg.micro_batch_size,
                "eval_batch_size": cfg.eval_batch_size, "eval_beams": cfg.eval_beams, "log_every_steps": cfg.log_every_steps}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    nonneg = {"max_steps": cfg.max_steps, "time_budget_minutes": cfg.time_budget_minutes, "patience": cfg.patience,
              "stop_after_steps": cfg.stop_after_steps, "max_history": cfg.max_history, "warmup_epochs": cfg.warmup_epochs,
              "eval_every_epochs": cfg.eval_every_epochs, "eval_every_steps": cfg.eval_every_steps,
              "save_every_steps": cfg.save_every_steps, "valid_users": cfg.valid_users, "eval_users": cfg.eval_users,
              "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm, "num_threads": cfg.num_threads,
              "forward_cost_tokens": cfg.forward_cost_tokens}
    for name, value in nonneg.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be positive, got {cfg.lr}")
    if not 0 <= cfg.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.dropout_free_minutes < 0:
        raise ValueError(f"dropout_free_minutes must be >= 0, got {cfg.dropout_free_minutes}")
    if cfg.dropout_free_under_epochs < 0:
        raise ValueError(f"dropout_free_under_epochs must be >= 0, got {cfg.dropout_free_under_epochs}")
    if cfg.dropout_free_under_epochs > 0:
        if cfg.dropout_free_minutes > 0:
            raise ValueError("dropout_free_minutes and dropout_free_under_epochs both decide when dropout starts; give one")
        if cfg.time_budget_minutes <= 0 and cfg.anneal_minutes <= 0:
            raise ValueError("dropout_free_under_epochs compares the epochs a run's horizon holds, but the run has "
                             "none; give --time-budget-minutes or --anneal-minutes")
    if not 0 <= cfg.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {cfg.ema_decay}")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    if cfg.anneal_minutes < 0:
        raise ValueError(f"anneal_minutes must not be negative, got {cfg.anneal_minutes}")
    if cfg.anneal_minutes > 0 and cfg.scheduler == "constant":
        raise ValueError("anneal_minutes lays out a decay, but the scheduler is constant; choose cosine or linear")
    if cfg.anneal_to_budget:
        if cfg.time_budget_minutes <= 0:
            raise ValueError("anneal_to_budget lays the decay over the time budget, but none is set; "
                             "give --time-budget-minutes")
        if cfg.anneal_minutes > 0:
            raise ValueError("anneal_to_budget and anneal_minutes both set the decay's horizon; give one")
        if cfg.scheduler == "constant":
            raise ValueError("anneal_to_budget lays out a decay, but the scheduler is constant; choose cosine or linear")
    if not 0 < cfg.decay_share <= 1:
        raise ValueError(f"decay_share must be in (0, 1], got {cfg.decay_share}")
    if cfg.decay_share < 1 and cfg.scheduler == "constant":
        raise ValueError("decay_share shapes a decay, but the scheduler is constant; choose cosine or linear")
    if cfg.distill_from is not None:
        if not cfg.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be positive, got {cfg.distill_temperature}")
        if not 0 <= cfg.distill_alpha <= 1:
            raise ValueError(f"distill_alpha must be in [0, 1], got {cfg.distill_alpha}")
        if cfg.prefix_training:
            raise ValueError("--distill-from works on per-sample batches; it cannot be combined with --prefix-training")
    if cfg.select_metric not in SELECT_METRICS:
        raise ValueError(f"unknown select metric {cfg.select_metric!r}; choose from {', '.join(SELECT_METRICS)}")
    if cfg.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"unknown budget clock {cfg.budget_clock!r}; choose wall or cpu")
    if cfg.mixed_precision not in PRECISIONS:
        raise ValueError(f"unknown mixed precision {cfg.mixed_precision!r}; choose from {', '.join(PRECISIONS)}")
    from genrec.model import ITEM_INPUTS, OBJECTIVES

    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose from {', '.join(OBJECTIVES)}")
    if cfg.item_inputs not in ITEM_INPUTS:
        raise ValueError(f"unknown item-input mode {cfg.item_inputs!r}; choose from {', '.join(ITEM_INPUTS)}")
    if cfg.prefix_training:
        from genrec.prefix_training import check_prefix_tasks

        if cfg.item_inputs != "pooled":
            raise ValueError("--prefix-training needs --item-inputs pooled (one causal encoder position per item)")
        check_prefix_tasks(cfg.tasks)
    if not 0.0 <= cfg.item_dropout < 1.0:
        raise ValueError(f"--item-dropout must be in [0, 1), got {cfg.item_dropout}")
    if not 0.0 <= cfg.history_dropout < 1.0:
        raise ValueError(f"--history-dropout must be in [0, 1), got {cfg.history_dropout}")
    if cfg.history_dropout and (cfg.item_inputs != "pooled" or cfg.prefix_training):
        raise ValueError("--history-dropout needs --item-inputs pooled without --prefix-training "
                         "(it hides whole items from a non-causal item encoder)")
    if cfg.item_embeddings and cfg.item_inputs != "pooled":
        raise ValueError("--item-embeddings needs --item-inputs pooled (the embedding is added to an item's pooled position)")
    if cfg.init is None:
        from genrec.model import PRESETS

        if cfg.preset not in PRESETS:
            raise ValueError(f"unknown model preset {cfg.preset!r}; choose from {', '.join(sorted(PRESETS))}")


def resolve_precision(requested: str, on_gpu: bool) -> str:
    """bf16 where the GPU has it, else fp16 on a GPU, fp32 on CPU; bf16 on CPU is refused (about 12x slower)."""
    if not on_gpu:
        if requested in ("bf16", "fp16"):
            raise ValueError(f"mixed precision {requested} needs a GPU (on this CPU it is slower than fp32); use --mixed-precision no")
        return "no"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bf16; use --mixed-precision fp16 or no")
    return requested


# -- init / resume locations -----------------------------------------------------------------
def resolve_init(path: str | Path, flag: str = "--init") -> tuple[Path, Path, dict[str, Any] | None]:
    """``(model folder, tokenizer folder, training config or None)`` of a run or model folder."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} {p}: no such run or model folder")
    run_config = None
    if (p / "best" / "config.json").is_file():
        model_dir = p / "best"
    elif (p / checkpoints.LAST / "config.json").is_file():
        model_dir = p / checkpoints.LAST
        logger.warning("%s %s has no best/ model; using its last checkpoint", flag, p)
    elif any((p / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        model_dir = p
    else:
        raise FileNotFoundError(f"{flag} {p}: no model found (expected best/, last/ or model.safetensors)")
    for cand in (p / "tokenizer", model_dir / "tokenizer", model_dir, p.parent / "tokenizer"):
        if (cand / "tokenizer.json").is_file():
            tok_dir = cand
            break
    else:
        raise FileNotFoundError(f"{flag} {p}: no tokenizer saved with the model (expected {p / 'tokenizer'})")
    if (p / "config.json").is_file() and (p / "best").is_dir():
        run_config = json.loads((p / "config.json").read_text(encoding="utf-8"))
    return model_dir, tok_dir, run_config


def check_same_tokenizer(expected, loaded, where: str) -> None:
    """The finetune's vocabulary must equal the checkpoint's token for token; a task slot that one
    side has reserved may hold a task the other side added (its embedding exists in both)."""
    a, b = expected.get_vocab(), loaded.get_vocab()
    if a == b:
        return
    if len(a) == len(b):
        ia, ib = {i: t for t, i in a.items()}, {i: t for t, i in b.items()}

        def same_slot(x: str, y: str) -> bool:
            reserved = RESERVED_TASK.split("{")[0]
            return x == y or (x.startswith("<task_") and y.startswith("<task_")
                              and (x.startswith(reserved) or y.startswith(reserved)))

        if ia.keys() == ib.keys() and all(same_slot(ia[i], ib[i]) for i in ia):
            return
    only_a = sorted(set(a) - set(b), key=a.get)[:3]
    only_b = sorted(set(b) - set(a), key=b.get)[:3]
    moved = [t for t in a if t in b and a[t] != b[t]][:3]
    raise ValueError(f"the tokenizer in {where} differs from the one this run builds for its codes "
                     f"({len(b)} vs {len(a)} tokens; missing there: {only_a}; extra there: {only_b}; "
                     f"different ids: {moved}); finetune with the same --codes-per-level/--dedup-tokens and codes of the "
                     "same code spec (levels) as the pretraining")


def resolve_vocab(cfg: TrainConfig) -> VocabConfig:
    """The vocabulary of a run: the code spec saved beside its datasets' code files (all must agree
    on the levels; files without one read as 4 levels), widened to ``--codes-per-level`` /
    ``--dedup-tokens``."""
    from genrec.data import DataError
    from genrec.data.codes import load_code_spec
    from genrec.data.dataset import code_paths

    found: dict[int, Path] = {}
    cpl, dedup = cfg.codes_per_level, cfg.dedup_tokens
    for name in cfg.datasets:
        for path in code_paths(Path(cfg.data_root) / name, name, cfg.text_codes, cfg.image_codes).values():
            spec = load_code_spec(path) if path is not None else None
            if spec is None:
                continue
            found.setdefault(spec.levels, path)
            cpl, dedup = max(cpl, spec.codes_per_level), max(dedup, spec.dedup_tokens)
    if len(found) > 1:
        (la, pa), (lb, pb) = sorted(found.items())[:2]
        raise DataError(pb, f"code spec has {lb} levels, {pa} has {la}: one run's datasets must share one code "
                            "vocabulary (export them from one quantizer, or with the same --levels)")
    return VocabConfig(codes_per_level=cpl, dedup_tokens=dedup, levels=next(iter(found), 4))


# -- data ------------------------------------------------------------------------------------------
def load_training_data(cfg: TrainConfig, tokenizer, *, first: Callable[[], Any] = contextlib.nullcontext,
                       write_cache: bool = True) -> list[DatasetData]:
    """Load every dataset, plan its tasks (image tasks skip datasets without image codes) and encode.

    ``first`` is a context manager under which the cache is built (the main process goes first,
    the others then read its cache).
    """
    from genrec.data import load_dataset

    tasks = parse_tasks(cfg.tasks)
    datasets = [load_dataset(cfg.data_root, name, text_codes=cfg.text_codes, image_codes=cfg.image_codes)
                for name in cfg.datasets]
    plan = resolve_tasks(tasks, datasets)
    cache = None if (cfg.cache_dir or "none").lower() == "none" else (
        default_cache_dir() if cfg.cache_dir == "auto" else Path(cfg.cache_dir))
    out = []
    for ds in datasets:
        if not plan[ds.name]:
            logger.warning("dataset %s trains no task (it lacks the codes every requested task needs)", ds.name)
            continue
        with first():
            out.append(build_dataset_data(ds, plan[ds.name], tokenizer, max_history=cfg.max_history,
                                          dedup=cfg.dedup_codes, cache_dir=cache, write_cache=write_cache))
    return out


# -- the loop ----------------------------------------------------------------------------------
def _subset(enc: Encoded, idx: np.ndarray) -> Encoded:
    lens = enc.source_lengths()[idx]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    src = np.concatenate([enc.source(i) for i in idx]).astype(np.int32) if len(idx) else np.zeros(0, np.int32)
    return Encoded(src, offsets, np.asarray(enc.tgt[idx]))


def subset_part(part: Part, users: np.ndarray | None) -> Part:
    if users is None:
        return part
    idx = np.flatnonzero(np.isin(np.asarray(part.users), users))
    return Part(part.dataset, part.task, part.split, [_subset(v, idx) for v in part.variants],
                np.asarray(part.items)[idx], np.asarray(part.users)[idx])


def _pick_users(n_users: int, k: int, seed: int, salt: int) -> np.ndarray | None:
    if k <= 0 or k >= n_users:
        return None
    return np.sort(np.random.default_rng([seed, salt]).choice(n_users, size=k, replace=False))


def _load_evaluator() -> Callable | None:
    try:
        from genrec.evaluation import evaluate_samples
    except ImportError as e:
        logger.warning("genrec.evaluation.evaluate_samples is unavailable (%s)", e)
        return None
    return evaluate_samples


class Trainer(Client):
    """Builds everything a run needs from a TrainConfig, then ``fit()`` runs the loop."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, overwrite: bool = False):
        from accelerate import Accelerator
        from accelerate.utils import broadcast_object_list

        check_config(cfg)
        self.cfg = cfg
        on_gpu = torch.cuda.is_available() and not cfg.cpu
        precision = resolve_precision(cfg.mixed_precision, on_gpu)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # cpu=True matters even under a launcher: without it two CPU processes silently train alone.
        self.acc = Accelerator(cpu=not on_gpu, mixed_precision=precision)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        # paper preset on CPU: costs of 512-2048 tokens per forward were 3-4x faster than one
        # padded micro-batch of 256 and within noise of each other; on a GPU the fixed cost of a
        # forward dominates, so few large micro-batches win
        self.forward_cost = cfg.forward_cost_tokens or (65536.0 if on_gpu else 1024.0)
        self.main = self.acc.is_main_process
        if self.world > 1:
            logger.info("distributed run: %d processes (%s)", self.world, self.acc.distributed_type)
        if cfg.run is None:
            name = [f"{cfg.mode}-{'_'.join(cfg.datasets)}-{time.strftime('%Y%m%d-%H%M%S')}"]
            broadcast_object_list(name)
            cfg.run = name[0]
        self.run_dir = Path(cfg.output_dir) / cfg.run
        # held until this process ends or train() returns; a second run into the folder fails here
        self.run_lock = claim_run_dir(self.run_dir, main=self.main, resume=resume, overwrite=overwrite,
                                      outputs=("best", checkpoints.LAST, "checkpoints"), broadcast=broadcast_object_list)
        self.ckpt_dir = checkpoints.last_dir(self.run_dir) if resume else None
        if resume and self.ckpt_dir is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir} (no {checkpoints.LAST} link)")
        self.resume = resume

        # tokenizer (and the pretrained model's, which must be identical); a resumed run keeps the
        # vocabulary it was built with
        self.tokenizer = build_tokenizer(resolve_vocab(cfg))
        if resume and (self.run_dir / "tokenizer" / "tokenizer.json").is_file():
            saved = load_tokenizer(self.run_dir / "tokenizer")
            if saved.get_vocab() != self.tokenizer.get_vocab():
                logger.info("resume: keeping the run's own vocabulary (%d tokens; this version builds %d)",
                            len(saved), len(self.tokenizer))
                self.tokenizer = saved
        init_model_dir = None
        if cfg.init and not resume:  # a resumed run restores its own weights
            init_model_dir, tok_dir, init_run_cfg = resolve_init(cfg.init)
            check_same_tokenizer(self.tokenizer, load_tokenizer(tok_dir), str(tok_dir))
            if init_run_cfg is not None:
                cfg.preset = init_run_cfg.get("preset", cfg.preset)
                if init_run_cfg.get("dedup_codes", cfg.dedup_codes) != cfg.dedup_codes:
                    logger.warning("--init was trained with dedup_codes=%s, this run uses %s",
                                   init_run_cfg.get("dedup_codes"), cfg.dedup_codes)

        self.teacher = None
        if cfg.distill_from:
            self.teacher = self._load_teacher(cfg.distill_from)

        self.data = self._load_data()
        if cfg.prefix_training:
            from genrec.prefix_training import PrefixTrainSet

            self.trainset = PrefixTrainSet([p for d in self.data for p in d.train], cfg.seed, cfg.max_history)
        else:
            self.trainset = TrainSet([p for d in self.data for p in d.train], cfg.seed)
        if len(self.trainset) == 0:
            raise ValueError(f"empty training set: no training examples for tasks {cfg.tasks} on {cfg.datasets} "
                             "(every user needs at least 4 interactions for a sequence-task training sample)")
        if self.main:
            for d in self.data:
                sizes = ", ".join(f"{p.task}={len(p)}" for p in d.train)
                logger.info("%s: training examples %s; validation users %d", d.name, sizes,
                            max((len(p) for p in d.valid), default=0))

        self.tries = self._build_tries() if cfg.objective == "constrained" else {}
        self.codebooks = self._load_codebooks() if not (resume or cfg.init) else {}
        seed_everything(cfg.seed)
        self.model = self._build_model(init_model_dir)
        self.optimizer = self._build_optimizer()
        self.steps_per_epoch = len(self._epoch_batches(0).batches)
        if self.steps_per_epoch == 0:
            raise ValueError(f"empty training set: {len(self.trainset)} examples make no batch of at least {self.world} examples")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch) if cfg.warmup_epochs > 0 else math.ceil(cfg.warmup_ratio * self.total_steps)
        self.warmup_steps = min(warmup, self.total_steps)
        from transformers import get_scheduler

        # The scheduler is not handed to accelerate: its wrapper steps once per process, but one
        # of our steps is already a whole global batch.
        # share of --anneal-minutes used so far, kept current by the training loop
        self.anneal_progress = 0.0
        # None: a dropout-free start has not decided yet; True/False: dropout runs / stays off
        self._dropout_on: bool | None = None
        if self.anneal_minutes > 0 or cfg.decay_share < 1:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: self._scheduled_lr(step))
        else:
            self.scheduler = get_scheduler(SCHEDULERS[cfg.scheduler], self.optimizer,
                                           num_warmup_steps=self.warmup_steps, num_training_steps=self.total_steps)
        self.model, self.optimizer = self.acc.prepare(self.model, self.optimizer)
        self.scaler = self.acc.scaler
        self.ema = None
        if cfg.ema_decay > 0:
            from genrec.utils.ema import WeightAverage

            # built after prepare so that the average sits on the model's device
            self.ema = WeightAverage(self.acc.unwrap_model(self.model), cfg.ema_decay)
            if resume and not self.ema.load(self.ckpt_dir):
                logger.warning("resume: %s holds no weight average; it restarts from the current weights", self.ckpt_dir)
        self.evaluator = None
        self._prepare_validation()
        loop = LoopConfig(
            epochs=None if cfg.max_steps else cfg.epochs, max_steps=cfg.max_steps,
            time_budget_minutes=cfg.time_budget_minutes, budget_clock=cfg.budget_clock,
            stop_after_steps=cfg.stop_after_steps, eval_every_epochs=cfg.eval_every_epochs,
            eval_every_steps=cfg.eval_every_steps, save_every_steps=cfg.save_every_steps, patience=cfg.patience,
            select_metric="valid_loss" if self.select == "valid_loss" else "valid_NDCG@10",
            select_mode="min" if self.select == "valid_loss" else "max", log_every_steps=cfg.log_every_steps,
            progress=self.main and cfg.progress, desc=f"{cfg.mode} {cfg.run}", plot=True)
        self.engine = Engine(self, loop, self.run_dir, steps_per_epoch=self.steps_per_epoch, accelerator=self.acc)
        if resume:
            self.engine.resume()
            if self.anneal_minutes > 0:
                self._update_anneal_progress()
        elif self.main:
            self.engine.start_fresh()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # the code files' hashes let evaluation refuse codes the model never saw
            fingerprints = code_fingerprints(cfg.data_root, cfg.datasets, cfg.text_codes, cfg.image_codes)
            atomic_write_json(self.run_dir / "config.json", {**cfg.to_json(), "code_files": fingerprints}, indent=2)
            with atomic_dir(self.run_dir / "tokenizer") as tmp:
                self.tokenizer.save_pretrained(str(tmp))
        self.acc.wait_for_everyone()

    # -- setup ------------------------------------------------------------------------------
    def _load_data(self) -> list[DatasetData]:
        return load_training_data(self.cfg, self.tokenizer, first=self.acc.main_process_first, write_cache=self.main)

    def _semantic_init(self, model) -> None:
        from genrec.semantic_init import semantic_init_

        spec = tokenizer_code_spec(self.tokenizer)
        for modality, path in (("text", self.cfg.text_codebooks), ("image", self.cfg.image_codebooks)):
            if path:
                letters = spec.letters(modality)
                n = semantic_init_(model, self.tokenizer, self.codebooks[modality], letters, seed=self.cfg.seed)
                logger.info("semantic init: %d %s code-token embeddings from %s", n, modality, path)

    def _load_codebooks(self) -> dict:
        """Codebooks for semantic init, checked against every dataset's codes before training starts."""
        from genrec.semantic_init import check_fits, load_codebooks

        out = {}
        for modality, path in (("text", self.cfg.text_codebooks), ("image", self.cfg.image_codebooks)):
            if not path:
                continue
            books = load_codebooks(path)
            for d in self.data:
                if modality in d.codes:
                    check_fits(books, d.codes[modality], f"--{modality}-codebooks {path} vs {d.name} {modality} codes")
            out[modality] = books
        return out

    def _build_tries(self) -> dict:
        from genrec.decoding import CodeTrie

        device = self.acc.device
        return {(d.name, m): CodeTrie.from_codes(self.tokenizer, c).to(device) for d in self.data for m, c in d.codes.items()}

    def _load_teacher(self, path: str):
        """The frozen teacher of ``--distill-from``: any preset and item inputs, the same vocabulary."""
        from genrec.model import load_model

        model_dir, tok_dir, _ = resolve_init(path, "--distill-from")
        check_same_tokenizer(self.tokenizer, load_tokenizer(tok_dir), str(tok_dir))
        teacher = load_model(model_dir)
        if bool(getattr(teacher.config, "genrec_causal_encoder", False)):
            raise ValueError(f"--distill-from {path}: a causal-encoder (prefix-training) teacher does not score single samples")
        teacher.requires_grad_(False).eval()
        logger.info("distilling from %s (T=%g, alpha=%g)", model_dir, self.cfg.distill_temperature, self.cfg.distill_alpha)
        return teacher.to(self.acc.device)

    def _build_model(self, init_model_dir: Path | None):
        from genrec.model import build_model, item_inputs_of, load_model

        cfg = self.cfg
        if self.resume:
            model = load_model(self.ckpt_dir)
        elif init_model_dir is not None:
            model = load_model(init_model_dir)
            if bool(getattr(model.config, "genrec_causal_encoder", False)) != cfg.prefix_training:
                raise ValueError(f"--init {init_model_dir} {'has' if cfg.prefix_training is False else 'lacks'} a causal "
                                 "encoder; --prefix-training must match the pretraining")
            if item_inputs_of(model.config) != cfg.item_inputs:
                raise ValueError(f"--init {init_model_dir} was trained with --item-inputs {item_inputs_of(model.config)}, "
                                 f"this run asks for {cfg.item_inputs}: the encoders differ; use the same --item-inputs")
            has_items = bool(getattr(model.config, "genrec_item_embeddings", 0))
            if cfg.item_embeddings and not has_items:
                raise ValueError(f"--init {init_model_dir} has no item embeddings; pretrain with --item-embeddings too, "
                                 "or finetune without it")
            model.config.genrec_objective = cfg.objective  # the objective may change between pretraining and finetuning
            logger.info("initialised from %s", init_model_dir)
        else:
            overrides = {} if cfg.dropout is None else {"dropout_rate": cfg.dropout}
            item_codes = None
            if cfg.item_embeddings:
                from genrec.tokenizer import code_token_ids

                item_codes = [code_token_ids(self.tokenizer, c) for d in self.data for c in d.codes.values()]
            model = build_model(cfg.preset, self.tokenizer, objective=cfg.objective, item_inputs=cfg.item_inputs,
                                causal_encoder=cfg.prefix_training, item_codes=item_codes, **overrides)
            self._semantic_init(model)
        if model.config.vocab_size != len(self.tokenizer):
            raise ValueError(f"model vocabulary ({model.config.vocab_size}) differs from the tokenizer ({len(self.tokenizer)})")
        if model.item_embed is not None:  # a training choice, like dropout: this run's value wins
            model.config.genrec_item_dropout = model.item_dropout = cfg.item_dropout
        elif cfg.item_dropout:
            raise ValueError("--item-dropout needs a model with item embeddings (--item-embeddings)")
        model.set_history_dropout(cfg.history_dropout)  # a training choice, like dropout: this run's value wins
        if cfg.dropout is not None:
            model.config.dropout_rate = cfg.dropout
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = cfg.dropout
        if self.main:
            logger.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
        return model

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        kwargs = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
        try:
            # one fused kernel per step on CPU and GPU (torch >= 2.4)
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, foreach=True, **kwargs)

    def _epoch_batches(self, epoch: int) -> "_EpochPlan":
        choice = self.trainset.variant_choice(epoch)
        batches = self.trainset.batches(epoch, self.cfg.batch_size, self.cfg.group_by_length, choice)
        # every process needs at least one example of a global batch (only a tiny last batch can miss)
        kept = [b for b in batches if len(b) >= self.world]
        return _EpochPlan(kept, choice)

    def _prepare_validation(self) -> None:
        cfg = self.cfg
        self.valid_parts: list[Part] = []
        self.eval_sets: list[tuple[str, str, Part, DatasetData]] = []
        for k, d in enumerate(self.data):
            n_users = max((int(np.max(p.users)) + 1 for p in d.valid if len(p)), default=0)
            loss_users = _pick_users(n_users, cfg.valid_users, cfg.seed, 2 * k)
            self.valid_parts += [subset_part(p, loss_users) for p in d.valid]
            if cfg.eval_every_epochs == 0 and cfg.eval_every_steps == 0:
                continue
            names = cfg.eval_tasks or (["seqrec"] if "seqrec" in [t.name for t in d.tasks] else
                                       [t.name for t in d.tasks if t.kind == "seq"][:1])
            rank_users = _pick_users(n_users, cfg.eval_users, cfg.seed, 2 * k + 1)
            for p in d.valid:
                if p.task in names:
                    self.eval_sets.append((d.name, p.task, subset_part(p, rank_users), d))
        self.select = cfg.select_metric
        if self.select == "ndcg@10" and (cfg.eval_every_epochs or cfg.eval_every_steps):
            self.evaluator = _load_evaluator() if self.eval_sets else None
            if self.evaluator is None:
                logger.warning("validation NDCG@10 is unavailable (no evaluator or no sequence task); "
                               "selecting the best checkpoint by valid_loss")
                self.select = "valid_loss"

    # -- one optimizer step ------------------------------------------------------------------
    def _forward_sum(self, model, batch: dict[str, torch.Tensor], keys: Sequence | None = None) -> torch.Tensor:
        """Summed target-token loss of a batch; ``keys``: each example's (dataset, target modality)."""
        batch = {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        if self.cfg.objective == "constrained" and TRIM_END_POSITION:
            depth = max(self.tries[k].levels for k in dict.fromkeys(keys))
            batch["decoder_input_ids"] = batch["decoder_input_ids"][:, :depth]
        smooth = self._smoothing(model)
        if self.teacher is None or not model.training:
            with self.acc.autocast():
                if self._level_outputs:
                    return self._loss_sum(model(**batch, output_states=True), labels, keys, self._output_weight(model),
                                          smoothing=smooth)
                return self._loss_sum(model(**batch).logits, labels, keys, smoothing=smooth)
        with self.acc.autocast():
            logits = model(**batch).logits
        hard = self._loss_sum(logits, labels, keys, smoothing=smooth)
        from genrec.objective import distill_kl_sum
        from genrec.utils.distill import mix_distill

        with torch.no_grad(), self.acc.autocast():
            teacher_logits = self.teacher(**batch).logits
        T = self.cfg.distill_temperature
        tries = self.tries if self.cfg.objective == "constrained" else None
        return mix_distill(hard, distill_kl_sum(logits, teacher_logits, labels, keys, tries, T), T, self.cfg.distill_alpha)

    def _loss_sum(self, logits: torch.Tensor, labels: torch.Tensor, keys: Sequence | None,
                  output_weight: torch.Tensor | None = None, smoothing: float = 0.0) -> torch.Tensor:
        from genrec.objective import constrained_loss_sum, full_loss_sum

        if self.cfg.objective == "constrained":
            return constrained_loss_sum(logits, labels, keys, self.tries, output_weight, smoothing)
        return full_loss_sum(logits, labels, smoothing)

    def _smoothing(self, model) -> float:
        """Label smoothing of the training loss; the validation loss stays the plain likelihood."""
        return self.cfg.label_smoothing if model.training else 0.0

    @property
    def _level_outputs(self) -> bool:
        """Train on the decoder states and each level's output columns only (see :data:`LEVEL_OUTPUTS`)."""
        return self.cfg.objective == "constrained" and LEVEL_OUTPUTS

    def _output_weight(self, model) -> torch.Tensor:
        return self.acc.unwrap_model(model).lm_head.weight

    def _prefix_forward_sum(self, model, srcs, tgts, keys) -> torch.Tensor:
        from genrec.prefix_training import collate_prefix

        batch, row_keys = collate_prefix(srcs, tgts, keys, pad_id=self.tokenizer.pad_token_id)
        batch = {k: v.to(self.acc.device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")
        states = self._level_outputs
        with self.acc.autocast():
            out = self.acc.unwrap_model(model).prefix_logits(**batch, output_states=states) if self.world == 1 else \
                model(prefix=batch, output_states=states)  # DDP needs the wrapped module's forward
            return self._loss_sum(out, labels, row_keys, self._output_weight(model) if states else None,
                                  smoothing=self._smoothing(model))

    def micro_batches(self, idx: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """This process's length-sorted micro-batches of the global batch ``idx``."""
        return shard_step(idx, lengths, self.world, self.rank, self.cfg.micro_batch_size, self.forward_cost)

    def _step(self, idx: np.ndarray, choice: np.ndarray, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward/backward every micro-batch of this process, then one optimizer step."""
        model = self.model
        model.train()
        n_tokens = self.trainset.target_tokens(idx, choice)
        micro = self.micro_batches(idx, lengths)
        total = torch.zeros((), device=self.acc.device)
        pad = self.tokenizer.pad_token_id
        for k, mb in enumerate(micro):
            srcs, tgts = self.trainset.examples(mb, choice)
            keys = self.trainset.target_keys(mb, choice)
            # gradients are all-reduced once, after the last micro-batch of the step
            ctx = contextlib.nullcontext() if k == len(micro) - 1 else self.acc.no_sync(model)
            with ctx:
                if self.cfg.prefix_training:
                    loss_sum = self._prefix_forward_sum(model, srcs, tgts, keys)
                else:
                    batch = collate(srcs, tgts, pad_id=pad, decoder_start_id=pad)
                    loss_sum = self._forward_sum(model, batch, keys)
                # DDP averages over processes, so scale by world / global token count
                self.acc.backward(loss_sum * (self.world / n_tokens))
            total += loss_sum.detach()
        grad_norm = None
        if self.cfg.max_grad_norm > 0:
            # stays a tensor: converting it here would synchronise a GPU every step
            grad_norm = self.acc.clip_grad_norm_(model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        model = self.ema.module if self.ema is not None else self.acc.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        out: dict[str, float] = {}
        pad = self.tokenizer.pad_token_id
        sums = []
        for part in self.valid_parts:
            for v, enc in enumerate(part.variants):
                n = len(enc)
                order = np.argsort(-enc.source_lengths(), kind="stable")
                chunks = [order[i:i + self.cfg.eval_batch_size] for i in range(0, n, self.cfg.eval_batch_size)]
                s = torch.zeros(2, dtype=torch.float64, device=self.acc.device)
                key = (part.dataset, get_task(part.task).directions[v].target)
                for c in chunks[self.rank::self.world]:
                    batch = collate([enc.source(i) for i in c], [enc.tgt[i] for i in c], pad_id=pad, decoder_start_id=pad)
                    s[0] += self._forward_sum(model, batch, [key] * len(c)).double()
                    s[1] += float(enc.tgt[c].size)
                sums.append(((part.dataset, part.task, v, len(part.variants)), s))
        if sums:
            stacked = self.acc.reduce(torch.stack([s for _, s in sums]), reduction="sum").cpu()
            per_task: dict[tuple[str, str], list[float]] = {}
            for ((ds, task, _v, _nv), _), (loss, tok) in zip(sums, stacked.tolist()):
                acc = per_task.setdefault((ds, task), [0.0, 0.0])
                acc[0] += loss
                acc[1] += tok
            total = [0.0, 0.0]
            for (ds, task), (loss, tok) in per_task.items():
                if tok:
                    out[f"valid_loss/{ds}/{task}"] = loss / tok
                total[0] += loss
                total[1] += tok
            if total[1]:
                out["valid_loss"] = total[0] / total[1]
        if self.evaluator is not None:
            scores = []
            for ds, task, part, d in self.eval_sets:
                if not len(part):
                    continue
                target_modality = next(t for t in d.tasks if t.name == task).directions[0].target
                metrics, _, _ = self.evaluator(
                    model, self.tokenizer, d.codes[target_modality], part.variants[0].sources(),
                    [int(i) for i in part.items], beams=self.cfg.eval_beams, topk=self.cfg.eval_beams,
                    batch_size=max(1, self.cfg.eval_batch_size // 4), ks=TABLE_KS,
                    accelerator=self.acc if self.world > 1 else None)
                for k in ("HR@10", "NDCG@10"):
                    out[f"valid_{k}/{ds}/{task}"] = float(metrics[k])
                scores.append(float(metrics["NDCG@10"]))
            if scores:
                out["valid_NDCG@10"] = float(np.mean(scores))
        if was_training:
            model.train()
        return out

    # -- the engine's client --------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        plan = self._epoch_batches(epoch)
        lengths = self.trainset.source_lengths(plan.choice)
        return [(idx, plan.choice, lengths) for idx in plan.batches]

    def train_step(self, batch: tuple[np.ndarray, np.ndarray, np.ndarray], state: LoopState) -> StepOutput:
        idx, choice, lengths = batch
        loss_sum, grad_norm = self._step(idx, choice, lengths)
        if self.ema is not None:  # inside the step, so its cost counts against the time budget
            self.ema.update(self.acc.unwrap_model(self.model))
        return StepOutput(loss_sum, self.trainset.target_tokens(idx, choice), len(idx), grad_norm)

    def on_step_end(self, state: LoopState) -> None:
        if self.anneal_minutes > 0:
            self._update_anneal_progress()
        if self.cfg.dropout_free_minutes > 0:
            self._set_dropout(state)

    def on_epoch_start(self, epoch: int, state: LoopState) -> None:
        if self.cfg.dropout_free_minutes > 0 or self.cfg.dropout_free_under_epochs > 0:
            self._set_dropout(state)  # also right after a resume

    def checkpoint_meta(self) -> dict[str, Any]:
        # the epoch rule decides once, on the first epoch's pace, which a resume cannot measure again
        return {"dropout_on": self._dropout_on} if self.cfg.dropout_free_under_epochs > 0 else {}

    def check_resume(self, saved: dict[str, Any], folder: Path) -> None:
        if self.cfg.dropout_free_under_epochs > 0:
            self._apply_dropout(saved.get("dropout_on"))

    def _budget_seconds(self, state: LoopState) -> float:
        """Seconds on the budget clock; with several processes their mean, so every replica decides alike."""
        used = state.train_cpu_seconds if self.cfg.budget_clock == "cpu" else state.train_seconds
        if self.world > 1:
            used = float(self.acc.reduce(torch.tensor([used], device=self.acc.device), reduction="mean").item())
        return used

    @property
    def horizon_minutes(self) -> float:
        """The run's planned length on the budget clock: the decay's horizon, else the time budget (0: none)."""
        return self.anneal_minutes or self.cfg.time_budget_minutes

    def _dropout_wanted(self, state: LoopState) -> bool | None:
        """Whether dropout runs from now on; None while the epoch rule has not decided (dropout stays off)."""
        if self.cfg.dropout_free_minutes > 0:
            return self._budget_seconds(state) >= self.cfg.dropout_free_minutes * 60
        if state.epoch < 1:
            return None
        # the pace of the epochs so far, all of them without dropout, as the reference runs measured it
        epochs = state.epoch / max(self._budget_seconds(state), 1e-9) * self.horizon_minutes * 60
        on = epochs >= self.cfg.dropout_free_under_epochs
        rate = float(self.acc.unwrap_model(self.model).config.dropout_rate)
        logger.info("dropout: the %.4g-minute horizon holds about %.0f epochs at the first epoch's pace (%s %g): %s",
                    self.horizon_minutes, epochs, ">=" if on else "<", self.cfg.dropout_free_under_epochs,
                    f"dropout {rate:g} from here" if on else "no dropout for the whole run")
        return on

    def _set_dropout(self, state: LoopState) -> None:
        if self._dropout_on or (self._dropout_on is not None and self.cfg.dropout_free_under_epochs > 0):
            return  # decided for good: nothing to decide per step
        self._apply_dropout(self._dropout_wanted(state))

    def _apply_dropout(self, on: bool | None) -> None:
        p = float(self.acc.unwrap_model(self.model).config.dropout_rate) if on else 0.0
        for m in self.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = p
        self._dropout_on = on

    def save_model(self, folder: Path, best: bool) -> None:
        if best and self.ema is not None:
            self.ema.module.save_pretrained(str(folder))  # the weights that were evaluated
            return
        self.acc.unwrap_model(self.model).save_pretrained(str(folder))
        if self.ema is not None:
            self.ema.save(folder)  # resume restores the average with the raw weights
        if not best:
            atomic_write_json(folder / "train_config.json", self.cfg.to_json(), indent=2)

    def load_model(self, folder: Path) -> None:
        pass  # built from the checkpoint's own folder in __init__ (its architecture may differ from the flags)

    @property
    def state(self) -> LoopState:
        return self.engine.state

    def save_checkpoint(self) -> None:
        self.engine.save_checkpoint()

    def fit(self) -> dict[str, Any]:
        st = self.engine.fit()
        if self.main:
            logger.info("stopped at step %d (%s); best %s = %s at step %s; run folder %s", st.step, st.stop_reason,
                        self.select, st.best_metric, st.best_step, self.run_dir)
            if st.stop_reason == "time_budget" and st.step < self.warmup_steps:
                # the schedule is laid out over --epochs/--max-steps, not over the time budget
                logger.warning("the time budget ended during warmup (step %d of %d warmup steps): the learning rate "
                               "never reached --lr; set --epochs or --max-steps to what the budget can train, or "
                               "--warmup-epochs", st.step, self.warmup_steps)
        return {"run_dir": str(self.run_dir), "step": st.step, "epoch": st.epoch, "stop_reason": st.stop_reason,
                "train_loss": self.engine.last_loss, "best_metric": st.best_metric, "best_step": st.best_step,
                "select_metric": self.select, "train_seconds": st.train_seconds,
                "train_cpu_seconds": st.train_cpu_seconds, "world_size": self.world}

    @property
    def anneal_minutes(self) -> float:
        """The horizon of a decay that follows the budget clock (0: the decay follows the steps)."""
        return self.cfg.time_budget_minutes if self.cfg.anneal_to_budget else self.cfg.anneal_minutes

    def _scheduled_lr(self, step: int) -> float:
        """Learning-rate factor of a decay that follows the clock (it then ends with the time budget,
        however many steps that budget holds) or that holds the peak rate before its last share."""
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        p = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.anneal_minutes > 0:
            # whichever horizon ends the run first, the budget clock or --epochs/--max-steps, ends the
            # decay: a 60-minute decay under a 200-epoch cap that binds at 46-48 minutes never began
            p = max(p, self.anneal_progress)
        share = self.cfg.decay_share
        q = min(1.0, max(0.0, (p - (1.0 - share)) / share))
        return 0.5 * (1.0 + math.cos(math.pi * q)) if self.cfg.scheduler == "cosine" else 1.0 - q

    def _update_anneal_progress(self) -> None:
        # clocks differ between processes; one shared rate keeps the replicas equal
        self.anneal_progress = self._budget_seconds(self.state) / (self.anneal_minutes * 60)


@dataclass
class _EpochPlan:
    batches: list[np.ndarray]
    choice: np.ndarray


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary dict.

    ``overwrite`` replaces a run folder that already holds a run (otherwise refused unless ``resume``).
    """
    with released_on_exit():
        return Trainer(cfg, resume=resume, overwrite=overwrite).fit()


# -- command line --------------------------------------------------------------------------------
def build_parser(mode: str) -> argparse.ArgumentParser:
    """Flags for every TrainConfig field; only flags actually given end up in the namespace."""
    from genrec.utils.cli_args import add_dataclass_flags

    doc = {"pretrain": "Multi-task T5 pretraining on one or more datasets (shared code tokens).",
           "finetune": "Multi-task T5 finetuning on a target dataset, optionally from a pretrained run."}[mode]
    p = argparse.ArgumentParser(prog=f"genrec.{mode}", description=doc, argument_default=argparse.SUPPRESS,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_flags(p, TrainConfig, defaults=default_config(mode), skip=("mode", "recipe"),
                        aliases={"datasets": ("--dataset",)})
    p.add_argument("--resume", action="store_true", default=False,
                   help="continue --run from its last checkpoint (flags given now override the saved config)")
    from genrec.recipes import available

    p.add_argument("--recipe", "--config", dest="recipe", help=f"start from a named recipe ({', '.join(available())}) or a .toml "
                   "file; flags given here override it (default: the paper's settings)")
    p.add_argument("--overwrite", action="store_true", default=False,
                   help="replace what an earlier run left in --run (best/, checkpoint-*/, last, eval/)")
    p.add_argument("--quick", action="store_true", default=False,
                   help="small default run: Synthetic dataset, tiny preset, a few epochs")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


TRAINING_IDENTITY = ("datasets", "tasks", "max_history", "dedup_codes", "preset", "objective", "item_inputs",
                     "item_embeddings", "seed", "batch_size", "lr",
                     "weight_decay", "scheduler", "warmup_ratio", "warmup_epochs", "text_codes", "image_codes")


def config_from_args(mode: str, ns: argparse.Namespace) -> tuple[TrainConfig, bool]:
    given = {k: v for k, v in vars(ns).items() if k not in ("resume", "overwrite", "quick", "log_level")}
    if ns.resume and ns.overwrite:
        raise ValueError("give --resume (continue the run) or --overwrite (replace it), not both")
    if ns.resume:
        run = given.get("run")
        if not run:
            raise ValueError("--resume needs --run NAME (the run folder under --output-dir)")
        run_dir = Path(given.get("output_dir", "log")) / run
        last = checkpoints.last_dir(run_dir)
        saved = last / "train_config.json" if last is not None else None
        if saved is None or not saved.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {run_dir}")
        base = TrainConfig.from_json(json.loads(saved.read_text(encoding="utf-8")))
        changed = [k for k in TRAINING_IDENTITY if k in given and given[k] != getattr(base, k)]
        if changed:
            logger.warning("resuming with changed settings %s: the run will not match an uninterrupted one", changed)
        return dataclasses.replace(base, **given), True
    base = default_config(mode)
    if given.get("recipe"):
        from genrec.recipes import load_recipe

        base = dataclasses.replace(base, **load_recipe(given["recipe"], mode))
    if ns.quick:  # genrec/configs/quick.toml over the recipe
        from genrec.recipes import load_recipe

        base = dataclasses.replace(base, **load_recipe("quick", mode))
    cfg = dataclasses.replace(base, **given)
    if "tasks" not in given:
        cfg = dataclasses.replace(cfg, tasks=fit_recipe_tasks(cfg, cfg.tasks))
    return cfg, False


def fit_recipe_tasks(cfg: TrainConfig, tasks: list[str]) -> list[str]:
    """A recipe's tasks less those that no dataset of the run has the codes for (a text-only dataset
    trains the recipe's text tasks), by the rule :func:`genrec.tasks.resolve_tasks` applies later;
    tasks given with ``--tasks`` are never dropped."""
    from genrec.data.dataset import code_paths

    found = [code_paths(Path(cfg.data_root) / name, name, cfg.text_codes, cfg.image_codes) for name in cfg.datasets]
    per_dataset = [{m for m, path in f.items() if path is not None and Path(path).is_file()} for f in found]
    if not any(per_dataset):
        return tasks  # no code file at all: loading the data reports it
    kept = [t for t in tasks if any(get_task(t).modalities <= have for have in per_dataset)]
    dropped = [t for t in tasks if t not in kept]
    if dropped and kept:
        logger.info("the recipe's tasks %s need codes that %s lacks: training %s",
                    ",".join(dropped), ",".join(cfg.datasets), ",".join(kept))
        return kept
    return tasks


def cli_main(mode: str, argv: Sequence[str] | None = None) -> int:
    ns = build_parser(mode).parse_args(argv)
    is_main = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=getattr(logging, str(ns.log_level).upper(), logging.INFO) if is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "accelerate", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    from genrec.utils.distributed import end_process_group

    hf_logging.disable_progress_bar()  # save_pretrained's per-shard bar
    try:
        cfg, resume = config_from_args(mode, ns)
        result = train(cfg, resume=resume, overwrite=ns.overwrite)
    except (DataError, ValueError, FileNotFoundError) as e:
        if is_main:
            print(f"genrec.{mode}: error: {e}", file=sys.stderr)
        return 2
    finally:
        end_process_group()
    if is_main:
        print(json.dumps(result))
    return 0
