"""The one training loop every sequence baseline uses (Hugging Face Accelerate, CPU or GPU).

- Data: shuffled training rows; the permutation of epoch ``e`` comes from ``seed`` and ``e``, so
  a resumed run sees the same batches. With several processes every rank takes its share of each
  global batch (``rows[rank::world]``), DDP averages the gradients.
- Model selection: validation NDCG@10 every ``eval_every`` epochs and when training stops; the
  best weights are kept and the test split is scored with them. Both splits use one protocol:
  full ranking, or with ``eval_negatives`` N > 0 the target among N fixed sampled negatives
  (``genrec.baselines.sampled_eval``).
- Stops at ``epochs``, after ``patience`` evaluations without improvement, at ``max_steps``, or
  when the time budget is spent (checked every step, agreed across ranks).
- Checkpoints (``<output_dir>/last``, written atomically): model weights as safetensors, optimizer,
  scheduler, step/epoch/batch position, best score and every rank's RNG states; ``<output_dir>/best``
  holds the best weights. ``resume`` continues exactly where the checkpoint stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from genrec.baselines.base import Distill, SeqRecModel, count_parameters
from genrec.baselines.data import NegativeSampler, SequenceData, eval_batches_with_times
from genrec.baselines.sampled_eval import EvalNegatives, protocol_name, ranks_among_candidates
from genrec.data import Sample
from genrec.metrics import TABLE_KS, metrics_from_ranks, ranks_from_scores
from genrec.utils.io import atomic_dir, atomic_write_json
from genrec.utils.malloc import reuse_freed_memory
from genrec.utils.clock import RunClock, any_process
from genrec.utils.train_state import has_training_state, load_training_state, rng_state, save_training_state, set_rng_state

logger = logging.getLogger(__name__)

SELECT_METRIC = "NDCG@10"


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256  # global batch (split across processes)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up, then constant (a time budget has no known end for a decay)
    grad_clip: float = 0.0  # 0 = off
    max_len: int = 50  # history / training window; 50 is customary for SASRec-style baselines
    budget_minutes: float = 0.0  # training budget incl. validation; 0 = none
    budget_clock: str = "wall"  # wall, or cpu (this process's CPU time, which other jobs on the machine do not shrink)
    max_steps: int = 0  # 0 = none
    group_batches: int = 50  # length-grouped batching: sort pools of this many batches by length (1 = off)
    eval_every: int = 1  # epochs between validation runs
    patience: int = 10  # validation runs without improvement before stopping
    eval_batch_size: int = 1024
    eval_negatives: int = 0  # 0 = full ranking; N = rank the target among N sampled negatives
    eval_negatives_seed: int = 0  # the protocol's seed, apart from ``seed`` so every model gets the same sample
    seed: int = 42
    output_dir: str = ""  # where checkpoints go; "" = keep nothing on disk
    resume: bool = True  # continue from <output_dir>/last when it exists
    cpu: bool = False  # force CPU even when a GPU is present
    distill_from: str = ""  # a baseline run folder (same dataset) whose best model is the frozen teacher
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5  # weight of the KL term; 1 - alpha on the hard next-item loss


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    step: int = 0  # optimiser steps in total
    elapsed: float = 0.0  # training seconds spent so far (survives resume)
    cpu_elapsed: float = 0.0  # the same in CPU seconds of this process
    best: float = -1.0
    best_epoch: float = 0.0
    best_step: int = 0
    bad_evals: int = 0
    last_eval_step: int = -1
    early_stopped: bool = False  # a resumed run does not train past its early stop
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    valid: dict[str, float]
    test: dict[str, float]
    params: int
    train_seconds: float
    steps: int
    epochs: float
    best_epoch: float
    stop_reason: str
    world_size: int
    history: list[dict[str, Any]]
    protocol: str = "full"

    def summary(self) -> dict[str, Any]:
        out = {f"test_{k}": v for k, v in self.test.items() if k != "users"}
        out.update({f"valid_{k}": v for k, v in self.valid.items() if k != "users"})
        out.update(params=self.params, train_seconds=round(self.train_seconds, 1), steps=self.steps,
                   epochs=round(self.epochs, 2), best_epoch=round(self.best_epoch, 2),
                   stop_reason=self.stop_reason, world_size=self.world_size, test_users=self.test.get("users"),
                   protocol=self.protocol)
        return out


ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate(score: ScoreFn, samples: Sequence[Sample], batch_size: int = 1024,
             device: torch.device | str = "cpu", accelerator: Accelerator | None = None,
             ks: Sequence[int] = TABLE_KS, negatives: EvalNegatives | None = None) -> dict[str, float]:
    """HR/NDCG: full ranking over all items (only padding is outside the ranking), or with
    ``negatives`` the rank of the target among its user's sampled negatives.

    With several processes each rank scores ``samples[rank::world]`` and the ranks are gathered.
    Samples that carry times (time-aware models) are scored with ``score(inputs, lengths, times)``.
    """
    if accelerator is not None and accelerator.num_processes > 1:
        samples = samples[accelerator.process_index::accelerator.num_processes]
    # similar lengths in a batch: less padding (metrics do not depend on the order)
    samples = sorted(samples, key=lambda s: len(s.history))
    ranks = []
    start = 0
    for inputs, lengths, targets, times in eval_batches_with_times(samples, batch_size):
        if times is None:
            scores = score(inputs.to(device), lengths.to(device))
        else:
            scores = score(inputs.to(device), lengths.to(device), times.to(device))
        if negatives is None:
            ranks.append(ranks_from_scores(scores.float(), targets.to(device)).cpu())
        else:
            # keyed by user, not by position: the sample does not depend on batching or sorting
            users = [s.user for s in samples[start:start + len(targets)]]
            negs = negatives.for_users(users).to(device)
            ranks.append(ranks_among_candidates(scores.float(), targets.to(device), negs).cpu())
        start += len(targets)
    flat = torch.cat(ranks).tolist() if ranks else []
    if accelerator is not None and accelerator.num_processes > 1:
        flat = gather_object(flat)
    return metrics_from_ranks(np.asarray(flat), ks)


class Trainer:
    def __init__(self, model: SeqRecModel, data: SequenceData, cfg: TrainConfig, run_config: dict | None = None,
                 teacher: SeqRecModel | None = None):
        if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.eval_every < 1 or cfg.patience < 1:
            raise ValueError("batch_size, eval_every and patience must be positive and epochs non-negative")
        if not cfg.distill_temperature > 0 or not 0 <= cfg.distill_alpha <= 1:
            raise ValueError(f"distillation needs temperature > 0 and alpha in [0, 1], got "
                             f"{cfg.distill_temperature} and {cfg.distill_alpha}")
        self.protocol = protocol_name(cfg.eval_negatives)
        self.cfg = cfg
        self.data = data
        self.eval_negatives = (data.eval_negatives(cfg.eval_negatives, cfg.eval_negatives_seed)
                               if cfg.eval_negatives else None)
        self.run_config = run_config or {}
        self.accelerator = Accelerator(cpu=cfg.cpu or not torch.cuda.is_available())
        self.params = count_parameters(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 0)
        # Not passed through accelerator.prepare: its scheduler wrapper steps once per process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warm) if warm else 1.0)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.distill = None
        if teacher is not None:
            teacher = teacher.to(self.accelerator.device).eval().requires_grad_(False)
            self.distill = Distill(teacher, cfg.distill_temperature, cfg.distill_alpha)
        self.sampler = (NegativeSampler(data.train_items, data.num_items)
                        if getattr(model, "loss_type", "ce") == "bce" else None)
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.out = Path(cfg.output_dir) if cfg.output_dir else None

    # -- helpers -------------------------------------------------------------------------
    @property
    def unwrapped(self) -> SeqRecModel:
        return self.accelerator.unwrap_model(self.model)

    def _log(self, msg: str, *args: Any) -> None:
        if self.accelerator.is_main_process:
            logger.info(msg, *args)

    def validate(self) -> dict[str, float]:
        self.model.eval()
        try:
            return evaluate(self.unwrapped.score, self.data.valid, self.cfg.eval_batch_size,
                            self.accelerator.device, self.accelerator, negatives=self.eval_negatives)
        finally:
            self.model.train()

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.unwrapped.state_dict().items()}

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.out is None:
            return
        rngs = gather_object([rng_state()]) if self.accelerator.num_processes > 1 else [rng_state()]
        if self.accelerator.is_main_process:
            with atomic_dir(self.out / "last") as tmp:
                save_model(self.unwrapped, str(tmp / "model.safetensors"))
                save_training_state(tmp, self.optimizer, self.scheduler, rngs)
                atomic_write_json(tmp / "state.json", {"state": asdict(self.state), "train_config": asdict(self.cfg),
                                                       "run_config": self.run_config,
                                                       "world_size": self.accelerator.num_processes}, indent=1)
        self.accelerator.wait_for_everyone()

    def _save_best(self, metrics: dict[str, float]) -> None:
        self.best_weights = self._snapshot()
        if self.out is not None and self.accelerator.is_main_process:
            with atomic_dir(self.out / "best") as tmp:
                save_model(self.unwrapped, str(tmp / "model.safetensors"))
                atomic_write_json(tmp / "metrics.json", {"valid": metrics, "step": self.state.step,
                                                         "run_config": self.run_config}, indent=1)

    def load_checkpoint(self) -> bool:
        last = self.out / "last" if self.out is not None else None
        if last is None or not (last / "state.json").is_file():
            return False
        meta = json.loads((last / "state.json").read_text())
        if meta.get("world_size") != self.accelerator.num_processes:
            raise ValueError(f"{last}: checkpoint was written by {meta.get('world_size')} processes, "
                             f"resuming with {self.accelerator.num_processes} would change the batches")
        if meta.get("run_config") != self.run_config:
            raise ValueError(f"{last}: checkpoint belongs to a different model/dataset configuration "
                             f"({meta.get('run_config')}); use another --output-dir")
        load_model(self.unwrapped, str(last / "model.safetensors"), device=str(self.accelerator.device))
        if has_training_state(last):
            rngs, _ = load_training_state(last, self.optimizer, self.scheduler)
        else:  # a run folder of an earlier version: one pickle of our own, written by this project
            blob = torch.load(last / "trainer.pt", map_location="cpu", weights_only=False)
            self.optimizer.load_state_dict(blob["optimizer"])
            self.scheduler.load_state_dict(blob["scheduler"])
            rngs = blob["rng"]
        set_rng_state(rngs[self.accelerator.process_index])
        self.state = TrainState(**meta["state"])
        best = self.out / "best" / "model.safetensors"
        if best.is_file():
            current = self._snapshot()
            load_model(self.unwrapped, str(best), device=str(self.accelerator.device))
            self.best_weights = self._snapshot()
            self.unwrapped.load_state_dict(current)
        self._log("resumed from %s at epoch %d, batch %d, step %d", last, self.state.epoch, self.state.batch, self.state.step)
        return True

    # -- the loop ------------------------------------------------------------------------
    def _evaluate_and_select(self, epoch_pos: float) -> bool:
        """Validate, keep the best weights; True when patience is exhausted."""
        metrics = self.validate()
        st = self.state
        st.last_eval_step = st.step
        score = metrics[SELECT_METRIC]
        improved = score > st.best
        if improved:
            st.best, st.best_epoch, st.best_step, st.bad_evals = score, epoch_pos, st.step, 0
            self._save_best(metrics)
        else:
            st.bad_evals += 1
        st.history.append({"epoch": round(epoch_pos, 3), "step": st.step, "seconds": round(st.elapsed, 1),
                           **{k: round(v, 5) for k, v in metrics.items() if k != "users"}})
        self._log("epoch %.2f step %d (%.0fs): valid HR@10 %.4f NDCG@10 %.4f%s", epoch_pos, st.step, st.elapsed,
                  metrics["HR@10"], metrics["NDCG@10"], " *" if improved else "")
        return st.bad_evals >= self.cfg.patience

    def fit(self) -> TrainResult:
        # Full-softmax buffers are reused from the heap instead of mmap'd and zero-filled afresh
        # every step (genrec.utils.malloc: a third of SASRec's CPU time on Beauty was kernel time).
        with reuse_freed_memory(self.accelerator.device.type == "cpu"):
            return self._fit()

    def _fit(self) -> TrainResult:
        if self.cfg.resume:
            self.load_checkpoint()  # replaces self.state: take the alias below only afterwards
        cfg, acc, st = self.cfg, self.accelerator, self.state
        world, rank = acc.num_processes, acc.process_index
        n = self.data.num_train_rows
        if n == 0:
            raise ValueError("no training pairs: every user's training part has fewer than 2 items")
        batches_per_epoch = len(self._epoch_batches(0))
        clock = RunClock(st.elapsed, st.cpu_elapsed)
        stop_reason = "early_stopping" if st.early_stopped else "epochs"
        self.model.train()
        while st.epoch < cfg.epochs and not st.early_stopped:
            global_batches = self._epoch_batches(st.epoch)
            bar = tqdm(range(st.batch, len(global_batches)), desc=f"epoch {st.epoch + 1}", leave=False,
                       disable=None if acc.is_main_process else True)
            for b in bar:
                rows = global_batches[b][rank::world]
                if global_batches[b].numel() >= world:  # every rank needs at least one row
                    self._train_step(rows)
                st.batch = b + 1
                st.elapsed, st.cpu_elapsed = clock.wall(), clock.cpu()
                if cfg.max_steps and st.step >= cfg.max_steps:
                    stop_reason = "max_steps"
                elif cfg.budget_minutes > 0 and any_process(
                        acc, acc.is_main_process and clock.spent(cfg.budget_clock) >= cfg.budget_minutes * 60):
                    stop_reason = "budget"  # the main process's clock decides, for every process
                if stop_reason != "epochs":
                    break
            bar.close()
            if st.batch >= len(global_batches):
                st.epoch, st.batch = st.epoch + 1, 0
            epoch_pos = st.epoch + st.batch / batches_per_epoch
            if stop_reason != "epochs" or st.epoch % cfg.eval_every == 0:
                if self._evaluate_and_select(epoch_pos) and stop_reason == "epochs":
                    stop_reason, st.early_stopped = "early_stopping", True
            st.elapsed = clock.wall()
            self.save_checkpoint()
            if stop_reason != "epochs":
                break
        if st.last_eval_step != st.step or self.best_weights is None:
            self._evaluate_and_select(st.epoch + st.batch / batches_per_epoch)
            st.elapsed = clock.wall()
        train_seconds = st.elapsed
        self.unwrapped.load_state_dict(self.best_weights)
        self.model.eval()
        valid = evaluate(self.unwrapped.score, self.data.valid, cfg.eval_batch_size, acc.device, acc,
                         negatives=self.eval_negatives)
        test = evaluate(self.unwrapped.score, self.data.test, cfg.eval_batch_size, acc.device, acc,
                        negatives=self.eval_negatives)
        self._log("done (%s) after %d steps, %.0fs; best epoch %.2f; test HR@10 %.4f NDCG@10 %.4f (%s)",
                  stop_reason, st.step, train_seconds, st.best_epoch, test["HR@10"], test["NDCG@10"], self.protocol)
        return TrainResult(valid=valid, test=test, params=self.params, train_seconds=train_seconds, steps=st.step,
                           epochs=st.epoch + st.batch / batches_per_epoch, best_epoch=st.best_epoch,
                           stop_reason=stop_reason, world_size=world, history=st.history, protocol=self.protocol)

    def _epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """Global batches of row indices for ``epoch`` (a pure function of seed and epoch).

        Length-grouped: rows are shuffled, cut into pools of ``group_batches`` batches, sorted by
        length inside a pool, batched, and the batches shuffled. Most users have short histories,
        so a random batch would be padded to the longest one; grouping saves most of that work.
        """
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(self.data.num_train_rows, generator=g)
        if cfg.group_batches <= 1:
            return list(order.split(cfg.batch_size))
        lengths = self.data.lengths
        batches = []
        for pool in order.split(cfg.batch_size * cfg.group_batches):
            pool = pool[torch.argsort(lengths[pool], descending=True, stable=True)]
            batches.extend(pool.split(cfg.batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def _train_step(self, rows: torch.Tensor) -> None:
        cfg, st, acc = self.cfg, self.state, self.accelerator
        inputs, targets, users = self.data.train_batch(rows)
        negatives = None
        if self.sampler is not None:
            gen = torch.Generator().manual_seed(cfg.seed * 7_919 + st.step * acc.num_processes + acc.process_index)
            negatives = self.sampler.sample(users, targets.shape[1], gen).to(acc.device)
        times = self.data.train_times(rows, inputs.shape[1])
        times = None if times is None else times.to(acc.device)
        loss = self.model(inputs.to(acc.device), targets.to(acc.device), negatives, times, distill=self.distill)
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        st.step += 1
