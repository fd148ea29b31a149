"""Model registry for the results benchmark: ``MODELS[name](dataset, budget_minutes, args) -> dict``.

Each entry trains (under the budget) and evaluates one model on one loaded ``RecDataset`` and
returns test metrics (``HR@K``/``NDCG@K``), the evaluation ``protocol`` (``"full"`` or
``"sampled-N"``, from ``--eval-negatives``), ``train_seconds``, ``params`` and details. Other
packages add entries with ``@register("name")``; ``args`` is the benchmark's namespace (entries
read the attributes they know with ``getattr`` and defaults).

Settings (``genrec.baselines.settings``): every entry starts from its config dataclass defaults,
then from ``--set`` overrides (``FIELD=VALUE`` for every model that has the field,
``NAME.FIELD=VALUE`` for one registry entry), and common train flags (``--lr``, ...) when given.
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

from genrec.metrics import TABLE_KS
from genrec.baselines.base import SeqRecModel
from genrec.baselines.data import SequenceData
from genrec.baselines.features import load_features, resolve_embedding
from genrec.baselines.settings import MODEL_DEFAULTS, apply_overrides, train_config
from genrec.baselines.id_gpt import IdGPT, IdGPTConfig
from genrec.baselines.mm_transformer import MmTransformer4Rec, MmTransformerConfig
from genrec.baselines.popularity import Popularity
from genrec.baselines.sampled_eval import protocol_name
from genrec.baselines.sasrec import SASRec, SASRecConfig
from genrec.baselines.tisasrec import TiSASRec, TiSASRecConfig
from genrec.baselines.trainer import Trainer, TrainConfig, evaluate
from genrec.data import RecDataset
from genrec.utils.rng import seed_everything

logger = logging.getLogger(__name__)

RunFn = Callable[[RecDataset, float, argparse.Namespace], dict[str, Any]]
MODELS: dict[str, RunFn] = {}

# Entries with their own settings dataclass (not trained by the baselines' Trainer), such as the
# generator's entry that benchmarks/genrec_entry.py registers.
ENTRY_CONFIGS: dict[str, type] = {}


def register(name: str, config: type | None = None) -> Callable[[RunFn], RunFn]:
    """Add an entry; ``config``: its own settings dataclass, which ``--set NAME.FIELD=`` addresses."""
    def wrap(fn: RunFn) -> RunFn:
        MODELS[name] = fn
        if config is not None:
            ENTRY_CONFIGS[name] = config
        return fn
    return wrap


def check_overrides(overrides: list[str] | None, names: list[str]) -> None:
    """Fail early on a ``--set`` key no selected model or TrainConfig knows."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for n in names:
        if n in MODEL_DEFAULTS:
            known |= {f.name for f in dataclasses.fields(MODEL_DEFAULTS[n])}
        elif n in ENTRY_CONFIGS:
            known |= {f.name for f in dataclasses.fields(ENTRY_CONFIGS[n])}
    for item in overrides or []:
        key = item.split("=", 1)[0]
        target, _, field = key.rpartition(".")
        if field not in known or (target and target not in MODELS):
            raise ValueError(f"--set {item!r}: unknown setting (known: {sorted(known)})")


# -- shared data (one split per dataset and window) -----------------------------------------
_DATA_CACHE: dict[tuple[int, int, bool], SequenceData] = {}


def sequence_data(dataset: RecDataset, max_len: int, with_times: bool = False) -> SequenceData:
    key = (id(dataset), max_len, with_times)
    if key not in _DATA_CACHE:
        if not any(k[0] == id(dataset) for k in _DATA_CACHE):
            _DATA_CACHE.clear()  # one dataset at a time: the benchmark walks datasets in order
        _DATA_CACHE[key] = SequenceData.from_dataset(dataset, max_len, with_times)
    return _DATA_CACHE[key]


def needs_times(cfg: Any) -> bool:
    return isinstance(cfg, TiSASRecConfig)


# -- model construction ------------------------------------------------------------------------
def build_model(cfg: Any, dataset: RecDataset, max_len: int) -> SeqRecModel:
    """The model for a config dataclass (embeddings are resolved and validated here)."""
    if isinstance(cfg, SASRecConfig):
        return SASRec(dataset.num_items, max_len, cfg)
    if isinstance(cfg, TiSASRecConfig):
        return TiSASRec(dataset.num_items, max_len, cfg)
    if isinstance(cfg, MmTransformerConfig):
        text_name = resolve_embedding(dataset, cfg.text_emb, "text", required=True)
        image_name = resolve_embedding(dataset, cfg.image_emb, "image", required=False)
        text = load_features(dataset, text_name)
        image = load_features(dataset, image_name) if image_name else None
        logger.info("mmtransformer on %s: text=%s image=%s", dataset.name, text_name, image_name or "none")
        return MmTransformer4Rec(dataset.num_items, max_len, cfg, text, image)
    if isinstance(cfg, IdGPTConfig):
        name = (None if cfg.init_text_emb in ("none", "")
                else resolve_embedding(dataset, cfg.init_text_emb, "text", required=True))
        text = load_features(dataset, name) if name else None
        return IdGPT(dataset.num_items, max_len, cfg, text)
    raise TypeError(f"no model for config {type(cfg).__name__}")


RESIDUAL_FLAGS = ("residual", "streams", "sinkhorn_iters")


def apply_residual_flags(cfg: Any, name: str, args: argparse.Namespace) -> Any:
    """``--residual/--streams/--sinkhorn-iters`` for the models that have them (SASRec, TiSASRec)."""
    flags = {k: getattr(args, k) for k in RESIDUAL_FLAGS if getattr(args, k, None) is not None}
    if not flags:
        return cfg
    fields = {f.name for f in dataclasses.fields(cfg)}
    if not set(flags) <= fields:
        if getattr(args, "model", None) == name:  # asked for this one model explicitly
            raise ValueError(f"model {name!r} has no {'/'.join('--' + k.replace('_', '-') for k in flags)} option "
                             "(only sasrec, sasrec-bce and tisasrec do)")
        return cfg
    return dataclasses.replace(cfg, **flags)


def resolved_model_config(name: str, args: argparse.Namespace, dataset: RecDataset) -> Any:
    cfg = apply_overrides(MODEL_DEFAULTS[name], name, getattr(args, "set", None))
    cfg = apply_residual_flags(cfg, name, args)
    # Record which embeddings "auto" picked, so results say what was used.
    if isinstance(cfg, MmTransformerConfig):
        cfg = dataclasses.replace(cfg, text_emb=resolve_embedding(dataset, cfg.text_emb, "text", True),
                                  image_emb=resolve_embedding(dataset, cfg.image_emb, "image", False) or "none")
    if isinstance(cfg, IdGPTConfig) and cfg.init_text_emb == "auto":
        cfg = dataclasses.replace(cfg, init_text_emb=resolve_embedding(dataset, "auto", "text", True))
    return cfg


def load_teacher(path: str, dataset: RecDataset, max_len: int, with_times: bool) -> SeqRecModel:
    """The best model of a finished baseline run on the same dataset, rebuilt from its recorded config."""
    from safetensors.torch import load_model as load_weights

    run = Path(path)
    state, weights = run / "best" / "trainer_state.json", run / "best" / "model.safetensors"
    if not state.is_file() or not weights.is_file():
        raise FileNotFoundError(f"--distill-from {run}: not a baseline run folder (expected best/trainer_state.json "
                                "and best/model.safetensors, as --output-dir writes them)")
    rc = json.loads(state.read_text(encoding="utf-8")).get("run_config", {})
    name = rc.get("model")
    if name not in MODEL_DEFAULTS:
        raise ValueError(f"--distill-from {run}: unknown teacher model {name!r}")
    if rc.get("dataset") != dataset.name:
        raise ValueError(f"--distill-from {run}: the teacher was trained on {rc.get('dataset')!r}, not {dataset.name!r}")
    window = rc.get("max_history", rc.get("max_len", 0))  # max_len: run folders of earlier versions
    if window < max_len:
        raise ValueError(f"--distill-from {run}: the teacher's window ({window}) is shorter than this run's ({max_len})")
    cfg = type(MODEL_DEFAULTS[name])(**rc["config"])
    if needs_times(cfg) and not with_times:
        raise ValueError(f"--distill-from {run}: a time-aware teacher ({name}) needs a time-aware student")
    import torch

    with torch.random.fork_rng(devices=[]):  # the student's dropout and batch order must not depend on the teacher
        teacher = build_model(cfg, dataset, window)
    load_weights(teacher, str(weights))
    logger.info("loaded the trained %s of %s", name, run)
    return teacher


def run_sequence_model(name: str, dataset: RecDataset, budget_minutes: float, args: argparse.Namespace) -> dict[str, Any]:
    args._dataset_name = dataset.name
    tcfg = train_config(name, budget_minutes, args)
    mcfg = resolved_model_config(name, args, dataset)
    data = sequence_data(dataset, tcfg.max_history, with_times=needs_times(mcfg))
    seed_everything(tcfg.seed)
    model = build_model(mcfg, dataset, tcfg.max_history)
    run_config = {"model": name, "dataset": dataset.name, "config": dataclasses.asdict(mcfg), "max_history": tcfg.max_history}
    if tcfg.eval_negatives:  # model selection ran on this protocol: a checkpoint of another must not resume
        run_config["protocol"] = protocol_name(tcfg.eval_negatives)
        run_config["eval_negatives_seed"] = tcfg.eval_negatives_seed
    teacher = (load_teacher(tcfg.distill_from, dataset, tcfg.max_history, needs_times(mcfg))
               if tcfg.distill_from else None)
    if teacher is not None:  # a resumed checkpoint must have learnt from the same teacher
        run_config["distill"] = {"from": str(Path(tcfg.distill_from).resolve()), "temperature": tcfg.distill_temperature,
                                 "alpha": tcfg.distill_alpha}
    result = Trainer(model, data, tcfg, run_config=run_config, teacher=teacher).fit()
    out: dict[str, Any] = {k: v for k, v in result.test.items() if k != "users"}
    out.update(protocol=result.protocol, train_seconds=round(result.train_seconds, 1), params=result.params,
               users=result.test["users"], valid={k: v for k, v in result.valid.items() if k != "users"},
               steps=result.steps, epochs=round(result.epochs, 2), best_epoch=round(result.best_epoch, 2),
               stop_reason=result.stop_reason, world_size=result.world_size, model_config=dataclasses.asdict(mcfg),
               train_config=dataclasses.asdict(tcfg), history=result.history)
    return out


for _name in MODEL_DEFAULTS:
    register(_name)(lambda dataset, budget, args, _n=_name: run_sequence_model(_n, dataset, budget, args))


@register("popularity")
def run_popularity(dataset: RecDataset, budget_minutes: float, args: argparse.Namespace) -> dict[str, Any]:
    tcfg = train_config("popularity", budget_minutes, args)
    protocol = protocol_name(tcfg.eval_negatives)
    data = sequence_data(dataset, tcfg.max_history)
    negatives = data.eval_negatives(tcfg.eval_negatives, tcfg.eval_negatives_seed) if tcfg.eval_negatives else None
    start = time.perf_counter()
    model = Popularity(data)
    seconds = time.perf_counter() - start
    valid = evaluate(model.score, data.valid, negatives=negatives)
    test = evaluate(model.score, data.test, negatives=negatives)
    out: dict[str, Any] = {k: v for k, v in test.items() if k != "users"}
    out.update(protocol=protocol, train_seconds=round(seconds, 1), params=0, users=test["users"],
               valid={k: v for k, v in valid.items() if k != "users"})
    return out


METRIC_KEYS = [f"HR@{k}" for k in TABLE_KS] + [f"NDCG@{k}" for k in TABLE_KS if k > 1]
