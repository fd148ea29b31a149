"""The one training loop every sequence baseline uses (Hugging Face Accelerate, CPU or GPU).

- Data: shuffled training rows; the permutation of epoch ``e`` comes from ``seed`` and ``e``, so
  a resumed run sees the same batches. With several processes every rank takes its share of each
  global batch (``rows[rank::world]``), DDP averages the gradients.
- Model selection: validation NDCG@10 every ``eval_every_epochs`` epochs and when training stops; the
  best weights are kept and the test split is scored with them. Both splits use one protocol:
  full ranking, or with ``eval_negatives`` N > 0 the target among N fixed sampled negatives
  (``genrec.baselines.sampled_eval``).
- Stops at ``epochs``, after ``patience`` evaluations without improvement, at ``max_steps``, or
  when the time budget is spent (checked every step, agreed across ranks).
- The loop, stop policy, checkpoints (``<output_dir>/checkpoint-<step>`` with a ``last`` link,
  ``<output_dir>/best``) and resume are the one engine's (``genrec.utils.engine``); this module
  supplies the batches, the step and the evaluation. ``resume`` continues exactly where the last
  checkpoint stopped.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors.torch import load_model, save_model

from genrec.baselines.base import Distill, SeqRecModel, count_parameters
from genrec.baselines.data import NegativeSampler, SequenceData, eval_batches_with_times
from genrec.baselines.sampled_eval import EvalNegatives, protocol_name, ranks_among_candidates
from genrec.data import Sample
from genrec.metrics import TABLE_KS, metrics_from_ranks, ranks_from_scores
from genrec.utils.batching import length_grouped
from genrec.utils.engine import Client, Engine, LoopConfig, LoopState, StepOutput
from genrec.utils.malloc import reuse_freed_memory

logger = logging.getLogger(__name__)

SELECT_METRIC = "NDCG@10"


def _h(default: Any, text: str = "") -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    epochs: int = _h(200, "training epochs")
    batch_size: int = _h(256, "global batch (split across processes)")
    lr: float = _h(1e-3, "Adam learning rate")
    weight_decay: float = _h(0.0, "Adam weight decay")
    warmup_steps: int = _h(0, "linear warm-up steps, then constant (a time budget has no known end for a decay)")
    max_grad_norm: float = _h(0.0, "clip the gradient norm (0 = off)")
    max_history: int = _h(50, "history / training window; 50 is customary for SASRec-style baselines")
    time_budget_minutes: float = _h(0.0, "training budget incl. validation (0 = none)")
    budget_clock: str = _h("wall", "wall, or cpu (this process's CPU time, which other jobs on the machine do not shrink)")
    max_steps: int = _h(0, "stop after this many steps (0 = none)")
    group_batches: int = _h(50, "length-grouped batching pool, in batches (1 = off)")
    eval_every_epochs: int = _h(1, "epochs between validation runs")
    patience: int = _h(10, "validation runs without improvement before stopping")
    eval_batch_size: int = _h(1024, "users per evaluation batch")
    eval_negatives: int = _h(0, "0 = full ranking over all items; N = rank each validation/test target among N "
                                "negatives sampled uniformly from the items its user never interacted with (the "
                                "sampled protocol of the SASRec paper, N=100); results are labelled 'sampled-N'")
    eval_negatives_seed: int = _h(0, "seed of the sampled negatives; with the user index it fixes each user's "
                                     "sample, the same for every model")
    seed: int = _h(42, "seed of initialisation, batch order and dropout")
    output_dir: str = _h("", "where checkpoints go; '' = keep nothing on disk")
    resume: bool = _h(True, "continue from <output_dir>/last when it exists")
    cpu: bool = _h(False, "force CPU even when a GPU is present")
    distill_from: str = _h("", "baseline run folder (same dataset) whose best model teaches this one")
    distill_temperature: float = _h(2.0, "softening temperature")
    distill_alpha: float = _h(0.5, "weight of the KL term; 1 - alpha on the hard next-item loss")


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
def rank_users(score: ScoreFn, samples: Sequence[Sample], batch_size: int = 1024, device: torch.device | str = "cpu",
               negatives: EvalNegatives | None = None) -> tuple[list[int], list[int]]:
    """Each sample's user and the 1-based rank of its target: among all items (full ranking), or with
    ``negatives`` among its user's sampled negatives. Samples that carry times (time-aware models)
    are scored with ``score(inputs, lengths, times)``."""
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
    return [s.user for s in samples], (torch.cat(ranks).tolist() if ranks else [])


def evaluate(score: ScoreFn, samples: Sequence[Sample], batch_size: int = 1024,
             device: torch.device | str = "cpu", accelerator: Accelerator | None = None,
             ks: Sequence[int] = TABLE_KS, negatives: EvalNegatives | None = None) -> dict[str, float]:
    """HR/NDCG of :func:`rank_users`'s ranks. With several processes each rank scores
    ``samples[rank::world]`` and the ranks are gathered."""
    if accelerator is not None and accelerator.num_processes > 1:
        samples = samples[accelerator.process_index::accelerator.num_processes]
    _, flat = rank_users(score, samples, batch_size, device, negatives)
    if accelerator is not None and accelerator.num_processes > 1:
        flat = gather_object(flat)
    return metrics_from_ranks(np.asarray(flat), ks)


class Trainer(Client):
    """A baseline model and its data as a client of the one training loop (``genrec.utils.engine``)."""

    def __init__(self, model: SeqRecModel, data: SequenceData, cfg: TrainConfig, run_config: dict | None = None,
                 teacher: SeqRecModel | None = None):
        if cfg.batch_size < 1 or cfg.epochs < 0 or cfg.eval_every_epochs < 1 or cfg.patience < 1:
            raise ValueError("batch_size, eval_every_epochs and patience must be positive and epochs non-negative")
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
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.out = Path(cfg.output_dir) if cfg.output_dir else None

    # -- the client's part -----------------------------------------------------------------
    @property
    def unwrapped(self) -> SeqRecModel:
        return self.accelerator.unwrap_model(self.model)

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        try:
            metrics = evaluate(self.unwrapped.score, self.data.valid, self.cfg.eval_batch_size,
                               self.accelerator.device, self.accelerator, negatives=self.eval_negatives)
        finally:
            self.model.train()
        if self.accelerator.is_main_process:
            logger.info("valid HR@10 %.4f NDCG@10 %.4f", metrics["HR@10"], metrics["NDCG@10"])
        return metrics

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.unwrapped.state_dict().items()}

    def save_model(self, folder: Path, best: bool) -> None:
        save_model(self.unwrapped, str(folder / "model.safetensors"))

    def load_model(self, folder: Path) -> None:
        load_model(self.unwrapped, str(folder / "model.safetensors"), device=str(self.accelerator.device))
        best = folder.parent / "best" / "model.safetensors"
        if best.is_file():
            current = self._snapshot()
            load_model(self.unwrapped, str(best), device=str(self.accelerator.device))
            self.best_weights = self._snapshot()
            self.unwrapped.load_state_dict(current)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"train_config": asdict(self.cfg), "run_config": self.run_config}

    def check_resume(self, saved: dict[str, Any], folder: Path) -> None:
        if saved.get("run_config") != self.run_config:
            raise ValueError(f"{folder}: checkpoint belongs to a different model/dataset configuration "
                             f"({saved.get('run_config')}); use another --output-dir")

    def on_best(self, metrics: dict[str, float]) -> None:
        self.best_weights = self._snapshot()

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """Global batches of row indices for ``epoch`` (a pure function of seed and epoch).

        Length-grouped (``genrec.utils.batching.length_grouped``) in pools of ``group_batches``
        batches. Batches too small to give every process a row are left out.
        """
        cfg = self.cfg
        world = self.accelerator.num_processes
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(self.data.num_train_rows, generator=g)
        if cfg.group_batches <= 1:
            return [b for b in order.split(cfg.batch_size) if b.numel() >= world]
        batches = length_grouped(order.numpy(), self.data.lengths.numpy(), cfg.batch_size, cfg.group_batches,
                                 lambda n: torch.randperm(n, generator=g).numpy())
        return [torch.from_numpy(b) for b in batches if len(b) >= world]

    def train_step(self, batch: torch.Tensor, state: LoopState) -> StepOutput:
        cfg, acc = self.cfg, self.accelerator
        rows = batch[acc.process_index::acc.num_processes]
        inputs, targets, users = self.data.train_batch(rows)
        negatives = None
        if self.sampler is not None:
            gen = torch.Generator().manual_seed(cfg.seed * 7_919 + state.step * acc.num_processes + acc.process_index)
            negatives = self.sampler.sample(users, targets.shape[1], gen).to(acc.device)
        times = self.data.train_times(rows, inputs.shape[1])
        times = None if times is None else times.to(acc.device)
        loss = self.model(inputs.to(acc.device), targets.to(acc.device), negatives, times, distill=self.distill)
        acc.backward(loss)
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(loss.detach(), 1, int(batch.numel()))

    # -- the run ---------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        # Full-softmax buffers are reused from the heap instead of mmap'd and zero-filled afresh
        # every step (genrec.utils.malloc: a third of SASRec's CPU time on Beauty was kernel time).
        with reuse_freed_memory(self.accelerator.device.type == "cpu"):
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        if self.data.num_train_rows == 0:
            raise ValueError("no training pairs: every user's training part has fewer than 2 items")
        steps_per_epoch = len(self.epoch_batches(0))
        loop = LoopConfig(epochs=cfg.epochs, max_steps=cfg.max_steps, time_budget_minutes=cfg.time_budget_minutes,
                          budget_clock=cfg.budget_clock, eval_every_epochs=cfg.eval_every_epochs, patience=cfg.patience,
                          select_metric=SELECT_METRIC, select_mode="max", progress=acc.is_main_process,
                          desc="train")
        engine = Engine(self, loop, self.out, steps_per_epoch=steps_per_epoch, accelerator=acc)
        if cfg.resume and self.out is not None:
            engine.resume()
        elif self.out is not None:
            engine.start_fresh()
        self.model.train()
        st = engine.fit()
        if self.best_weights is None:  # resumed at its limits with no best/ on disk
            engine.evaluate()
        self.unwrapped.load_state_dict(self.best_weights)
        self.model.eval()
        valid = evaluate(self.unwrapped.score, self.data.valid, cfg.eval_batch_size, acc.device, acc,
                         negatives=self.eval_negatives)
        test = evaluate(self.unwrapped.score, self.data.test, cfg.eval_batch_size, acc.device, acc,
                        negatives=self.eval_negatives)
        stop_reason = st.stop_reason
        if acc.is_main_process:
            logger.info("done (%s) after %d steps, %.0fs; best epoch %.2f; test HR@10 %.4f NDCG@10 %.4f (%s)",
                        stop_reason, st.step, st.train_seconds, st.best_epoch, test["HR@10"], test["NDCG@10"],
                        self.protocol)
        return TrainResult(valid=valid, test=test, params=self.params, train_seconds=st.train_seconds, steps=st.step,
                           epochs=engine.epoch_float(), best_epoch=st.best_epoch, stop_reason=stop_reason,
                           world_size=acc.num_processes, history=st.history, protocol=self.protocol)
