"""``python -m index.train``: train one semantic-ID quantizer for one modality.

RQ-VAE trains with AdamW; RQ-KMeans is fitted once. Several ``--datasets`` train one shared
quantizer on all of their items (codes are exported per dataset by ``index.generate_codes``).
A held-out share of items measures reconstruction; metrics go to ``<run_dir>/metrics.jsonl``,
checkpoints to ``<run_dir>/best`` and ``<run_dir>/checkpoint-<step>`` with a ``last`` link
(resumable; the loop is the one engine's, ``genrec.utils.engine``), the codebook-usage figure to
``<run_dir>/codebook_usage.png``.

Example::

    python -m index.train --data-root data --dataset Scientific --embedding all-MiniLM-L6-v2 \\
        --modality text --epochs 200
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from genrec.data import DataError
from genrec.utils import checkpoints
from genrec.utils.engine import Client, Engine, LoopConfig, LoopState, StepOutput
from genrec.utils.io import append_jsonl, atomic_write_json
from genrec.utils.runlock import claim_run_dir, released_on_exit
from index.checkpoint import load_model, write_model
from index.config import (QuantizerConfig, TrainConfig, add_dataclass_args, load_json_config,
                          overrides_from_args)
from index.data import EmbeddingSet, load_embedding_set
from index.metrics import code_stats
from index.plots import plot_usage
from index.quantizers import SemanticQuantizer, build_quantizer
from index.schedules import SCHEDULE_CHOICES, SCHEDULES, describe, remaining, resolve_schedule

logger = logging.getLogger("index.train")

EVAL_CHUNK = 4096


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def split_items(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random held-out items (at least one when holdout > 0 and there are two or more items)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(holdout * n))
    if holdout > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@torch.no_grad()
def evaluate(model: SemanticQuantizer, x: torch.Tensor, val_idx: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Nearest-code statistics over all items, reconstruction on the held-out ones."""
    was_training = model.training
    model.eval()
    codes, recon_err, quant_err = [], [], []
    for start in range(0, x.shape[0], EVAL_CHUNK):
        xb = x[start:start + EVAL_CHUNK]
        z = model.latent(xb)
        out = model.rq(z, balanced=False)
        recon = model.decode_latent(out.quantized)
        recon_err.append((recon - xb).pow(2).mean(1))
        # per item, the value of the quantizer loss: (1 + beta) * mean over levels of |r_l - q_l|^2 / d
        residual = z
        per_level = []
        for level, cb in enumerate(model.rq.codebooks):
            q = cb[out.codes[:, level]]
            per_level.append((residual - q).pow(2).mean(1))
            residual = residual - q
        quant_err.append((1 + model.rq.beta) * torch.stack(per_level, 1).mean(1))
        codes.append(out.codes)
    model.train(was_training)
    codes_np = torch.cat(codes).cpu().numpy()
    recon_all = torch.cat(recon_err).double().cpu().numpy()
    quant_all = torch.cat(quant_err).double().cpu().numpy()
    idx = val_idx if len(val_idx) else np.arange(len(recon_all))  # no held-out items: report on all
    metrics = {
        "val_recon": float(recon_all[idx].mean()),
        "val_loss": float(recon_all[idx].mean() + model.cfg.quant_weight * quant_all[idx].mean()),
        "all_recon": float(recon_all.mean()),
        **code_stats(codes_np, model.rq.sizes),
    }
    return metrics, codes_np


def _meta(cfg: TrainConfig, data: EmbeddingSet, n_train: int, n_val: int) -> dict[str, Any]:
    return {"config": cfg.to_dict(), "input_dim": data.dim, "modality": cfg.modality, "kind": cfg.quantizer.kind,
            "datasets": data.names, "embedding": cfg.embedding,
            "items_per_dataset": [b - a for a, b in zip(data.offsets[:-1], data.offsets[1:])],
            "split": {"train": n_train, "holdout": n_val}}


def check_compatible(meta: dict[str, Any], where: Path, modality: str, input_dim: int, kind: str | None = None) -> None:
    """Refuse a checkpoint trained for another modality, embedding size or strategy."""
    if meta.get("modality") != modality:
        raise DataError(where, f"checkpoint is a {meta.get('modality')} quantizer, but --modality is {modality}")
    if int(meta.get("input_dim", -1)) != input_dim:
        raise DataError(where, f"checkpoint expects {meta.get('input_dim')}-d embeddings, the data has {input_dim}-d")
    if kind is not None and meta.get("kind") != kind:
        raise DataError(where, f"checkpoint is a {meta.get('kind')} quantizer, the config asks for {kind}")


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "cosine":
            progress = min(1.0, (step - warmup) / max(total - warmup, 1))
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0
    return factor


@torch.no_grad()
def restart_dead_codes(model: SemanticQuantizer, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                       seed: int) -> list[int]:
    """Move codewords that no item of ``x`` (a fixed sample of training items) is nearest to."""
    was_training = model.training
    model.eval()
    z = model.latent(x)
    model.train(was_training)
    before = [cb.detach().clone() for cb in model.rq.codebooks]
    restarted = model.rq.restart_dead_codes(z, torch.Generator().manual_seed(seed))
    # Forget the moments of moved codewords so Adam does not push them back where they were.
    for cb, old in zip(model.rq.codebooks, before):
        moved = (cb.detach() != old).any(dim=1)
        state = optimizer.state.get(cb, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][moved] = 0
    return restarted


class QuantizerClient(Client):
    """One quantizer and its items as a client of the one training loop (``genrec.utils.engine``)."""

    def __init__(self, cfg: TrainConfig, model: SemanticQuantizer, x: torch.Tensor, train_idx: np.ndarray,
                 val_idx: np.ndarray, meta_base: dict[str, Any], steps_per_epoch: int):
        self.cfg, self.model, self.x = cfg, model, x
        self.train_t = torch.as_tensor(train_idx, device=x.device)
        self.val_idx = val_idx
        self.meta_base = meta_base
        self.steps_per_epoch = steps_per_epoch
        self.ae_warmup = cfg.ae_warmup_epochs if model.trainable else 0
        self.optimizer = self.scheduler = None
        if model.trainable:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg, steps_per_epoch))
        # k-means on a random sample of all training items (not the first batch); a no-op on resume
        # because the persisted ``initialised`` flag is already set
        rng = np.random.default_rng(cfg.seed + 1)
        sample = train_idx if len(train_idx) <= cfg.quantizer.kmeans_samples else \
            np.sort(rng.choice(train_idx, cfg.quantizer.kmeans_samples, replace=False))
        self.sample_init = torch.as_tensor(sample, device=x.device)
        # restarts draw replacement codewords from a fixed random subset of training items
        self.sample_restart = torch.as_tensor(np.random.default_rng(cfg.seed + 2).permutation(train_idx)[:8192],
                                              device=x.device)
        self.t_start = time.perf_counter()
        self.start_epoch = 0
        self.quantize = self.ae_warmup == 0
        self.sums, self.seen = np.zeros(3), 0
        self.last_record: dict[str, Any] = {}
        self.state: LoopState | None = None

    def init_codebooks(self) -> None:
        t0 = time.perf_counter()
        if self.model.fit_codebooks(self.x[self.sample_init], torch.Generator().manual_seed(self.cfg.seed)):
            logger.info("k-means codebook init on %d items: %.1fs", len(self.sample_init), time.perf_counter() - t0)
        else:
            logger.info("codebooks already initialised (loaded); skipping k-means")

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        # seeded per epoch: a resumed run sees the same batches as an uninterrupted one
        perm = torch.randperm(len(self.train_t), generator=torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch))
        batches = [self.train_t[perm[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size].to(self.x.device)]
                   for b in range(self.steps_per_epoch)]
        if self.cfg.quantizer.batch_norm:
            batches = [b for b in batches if len(b) >= 2]  # batch-norm cannot train on a single item
        return batches

    def on_epoch_start(self, epoch: int, state: LoopState) -> None:
        self.state = state
        self.model.train()
        self.sums, self.seen = np.zeros(3), 0
        self.quantize = epoch >= self.ae_warmup
        if self.quantize and not bool(self.model.rq.initialised):
            self.init_codebooks()  # after the auto-encoder warm-up, on latents that mean something
        elif self.quantize and self.cfg.dead_code_restart and epoch > self.ae_warmup and epoch % self.cfg.dead_code_restart == 0:
            # at the start of an epoch and from the current model only, so resuming repeats it
            restarted = restart_dead_codes(self.model, self.optimizer, self.x[self.sample_restart], self.cfg.seed * 7919 + epoch)
            if any(restarted):
                logger.debug("epoch %d: restarted dead codes per level %s", epoch, restarted)

    def train_step(self, idx: torch.Tensor, state: LoopState) -> StepOutput:
        out = self.model(self.x[idx], balanced=True, quantize=self.quantize)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        # .item(): accumulate numbers, not graphs (the published loop leaked memory here)
        losses = np.array([out["loss"].item(), out["recon_loss"].item(), out["quant_loss"].item()])
        self.sums += len(idx) * losses
        self.seen += len(idx)
        return StepOutput(torch.tensor(losses[0] * len(idx)), len(idx), len(idx))

    def evaluate(self) -> dict[str, Any]:
        metrics, _ = evaluate(self.model, self.x, self.val_idx)
        record: dict[str, Any] = {"quantized": bool(self.model.rq.initialised)}
        if self.scheduler is not None:
            record["lr"] = self.scheduler.get_last_lr()[0]
        if self.seen:
            mean = (self.sums / self.seen).tolist()  # plain floats in logs and metrics.jsonl
            record.update(train_loss=mean[0], train_recon=mean[1], train_quant=mean[2])
        elapsed = round(time.perf_counter() - self.t_start, 3)
        record.update(metrics, elapsed_s=elapsed)
        self.last_record = record
        st = self.state
        if st is not None and self.cfg.epochs:
            logger.info("epoch %d/%d: val recon %.4g, collisions %.3f; %s elapsed, about %s left", st.epoch,
                        self.cfg.epochs, record["val_recon"], record["collision_rate"], tqdm.format_interval(elapsed),
                        remaining(elapsed, max(st.epoch, self.start_epoch + 1), self.start_epoch, self.cfg.epochs))
        return record

    def can_be_best(self) -> bool:
        return bool(self.model.rq.initialised)

    def save_model(self, folder: Path, best: bool) -> None:
        st = self.state
        meta = {**self.meta_base, "epoch": st.epoch if st else 0, "step": st.step if st else 0,
                "metrics": self.last_record}
        if best:
            meta["best_metric"] = self.cfg.best_metric
        write_model(folder, self.model, meta)

    def load_model(self, folder: Path) -> None:
        pass  # the model was rebuilt from this checkpoint before the optimizer


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) one training; returns a summary with the best metrics and paths.

    The run folder is locked while it runs; a fresh run into a folder that holds ``best/`` or
    ``last/`` is refused unless ``cfg.overwrite``.
    """
    with released_on_exit():
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict[str, Any]:
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    run_dir = cfg.resolved_run_dir()
    run_lock = claim_run_dir(run_dir, resume=cfg.resume, overwrite=cfg.overwrite,  # noqa: F841
                             outputs=("best", checkpoints.LAST), also_remove=())
    best_dir = run_dir / checkpoints.BEST
    data = load_embedding_set(cfg.data_root, cfg.datasets, cfg.embedding)
    n = data.x.shape[0]
    train_idx, val_idx = split_items(n, cfg.holdout, cfg.seed)
    if data.valid is not None and not data.valid.all():
        logger.info("%d rows are masked as missing embeddings: left out of training", int((~data.valid).sum()))
        train_idx, val_idx = train_idx[data.valid[train_idx]], val_idx[data.valid[val_idx]]
    k = cfg.quantizer.codebook_size
    if len(train_idx) < k:
        raise DataError(data.paths[0], f"{len(train_idx)} training items ({n} items, {len(val_idx)} held out) for "
                        f"{k} codes per level: the k-means init needs at least as many items as codes "
                        f"(lower --codebook-size or --holdout)")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    last_dir = checkpoints.last_dir(run_dir)
    if cfg.resume:
        if last_dir is None:
            raise DataError(run_dir, "nothing to resume: no checkpoint in this run folder")
        model, meta = load_model(last_dir, device)
        check_compatible(meta, last_dir, cfg.modality, data.dim, cfg.quantizer.kind)
        if list(meta.get("datasets", [])) != data.names:
            raise DataError(last_dir, f"checkpoint was trained on {meta.get('datasets')}, not {data.names}")
        saved_q = TrainConfig.from_dict(meta["config"]).quantizer
        if saved_q != cfg.quantizer:
            logger.warning("resuming: using the checkpoint's quantizer settings (they differ from this command's)")
            cfg.quantizer = saved_q
    else:
        model = build_quantizer(cfg.quantizer, data.dim).to(device)
    x = torch.from_numpy(data.x).to(device)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
    client = QuantizerClient(cfg, model, x, train_idx, val_idx, _meta(cfg, data, len(train_idx), len(val_idx)),
                             steps_per_epoch)
    epochs = cfg.epochs if model.trainable else 0
    loop = LoopConfig(epochs=epochs, eval_every_epochs=cfg.eval_every_epochs, select_metric=cfg.best_metric,
                      select_mode="min", progress=cfg.progress, desc=f"{cfg.quantizer.kind} {cfg.modality}")
    engine = Engine(client, loop, run_dir, steps_per_epoch=len(client.epoch_batches(0)))
    if cfg.resume and model.trainable:
        engine.resume()
    elif not cfg.resume:
        engine.start_fresh()
    client.state = engine.state
    client.start_epoch = engine.state.epoch
    if client.ae_warmup == 0:
        client.init_codebooks()
    if model.trainable and engine.state.step == 0 and epochs > 0 and client.ae_warmup == 0:
        # epoch 0: the k-means-initialised model, the reference point for what training adds
        append_jsonl(engine.metrics_path, {"type": "eval", "epoch": 0, "step": 0, **client.evaluate()})
    with logging_redirect_tqdm():
        engine.fit()
    if not bool(model.rq.initialised):
        # The run ended inside the auto-encoder warm-up: initialise for a usable 'best', but keep
        # 'last' as it was so a resume still finishes the warm-up before its k-means init.
        client.init_codebooks()
        engine.save_best(client.evaluate())
    train_time = time.perf_counter() - client.t_start

    best_model, best_meta = load_model(best_dir, device)
    best_metrics, best_codes = evaluate(best_model, x, val_idx)
    plot_usage(best_codes, best_model.rq.sizes, run_dir / "codebook_usage.png",
               f"{'+'.join(data.names)} {cfg.modality} {cfg.quantizer.kind} (epoch {best_meta['epoch']}, nearest codes)")
    summary = {"run_dir": str(run_dir), "best_dir": str(best_dir), "best_metric": cfg.best_metric,
               "best_epoch": best_meta["epoch"], "epochs": epochs, "train_time_s": round(train_time, 3),
               "device": str(device), "best": best_metrics}
    atomic_write_json(run_dir / "summary.json", summary, indent=2)
    return summary


# -- CLI ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m index.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="JSON file with TrainConfig fields (flags override it)")
    p.add_argument("--dataset", default=None, help="one dataset (same as --datasets NAME)")
    p.add_argument("--schedule", default="auto", choices=SCHEDULE_CHOICES,
                   help="named training schedule under --config and flags: cpu (40 epochs of 256, 5 auto-encoder "
                        "warm-up epochs, cosine lr), paper (500 epochs of 2048, constant lr), auto (default: cpu "
                        "without a GPU, paper with one)")
    add_dataclass_args(p, TrainConfig)
    add_dataclass_args(p, QuantizerConfig)
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    raw = load_json_config(args.config) if args.config else {}
    raw_q = dict(raw.pop("quantizer", {}) or {})
    raw_q.update(overrides_from_args(args, QuantizerConfig))
    flags = overrides_from_args(args, TrainConfig)
    schedule = resolve_schedule(getattr(args, "schedule", "auto"), flags.get("device", raw.get("device", "auto")))
    args.resolved_schedule = schedule
    raw = {**SCHEDULES[schedule], **raw, **flags}
    if args.dataset:
        if raw.get("datasets") and tuple(raw["datasets"]) != (args.dataset,):
            raise ValueError("give either --dataset or --datasets, not both")
        raw["datasets"] = (args.dataset,)
    raw["quantizer"] = raw_q  # built in one go so per-level defaults follow --levels
    return TrainConfig.from_dict(raw)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        logger.info("%s (given flags and --config override it)", describe(args.resolved_schedule))
        summary = train(cfg)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    best = summary["best"]
    print(json.dumps({"run_dir": summary["run_dir"], "schedule": args.resolved_schedule, "best_epoch": summary["best_epoch"],
                      "train_time_s": summary["train_time_s"], "val_recon": round(best["val_recon"], 6),
                      "collision_rate": round(best["collision_rate"], 4), "utilisation": best["utilisation"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
