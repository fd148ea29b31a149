"""The one training loop. The generator (``genrec.training``), the baselines
(``genrec.baselines.trainer``) and the quantizer (``index.train``) are its clients: each supplies
the work of one step and of one evaluation; the engine owns everything around them.

- the loop: epochs of batches the client plans from ``(seed, epoch)``, so a resumed run sees the
  same batches; a new epoch plan is drawn whenever an epoch ends;
- the stop policy: epochs, max steps, a time budget on the wall or CPU clock, a signal (finish the
  step, checkpoint, stop), patience on the selected metric; every decision agreed by all processes;
- model selection: ``best/`` holds the model with the best selected metric;
- checkpoints (``genrec.utils.checkpoints``): ``checkpoint-<step>/`` with a ``last`` link, weights
  from the client, optimizer, scheduler, grad scaler, every process's RNG and the loop counters,
  and one resume rule: a run continues exactly where its last checkpoint stopped;
- the metrics log (``metrics.jsonl``: train, eval and end records) and its plot (``curve.png``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from genrec.utils import checkpoints
from genrec.utils.clock import RunClock, any_process
from genrec.utils.io import append_jsonl, atomic_dir, atomic_output, atomic_write_json, atomic_write_text, read_jsonl
from genrec.utils.train_state import has_training_state, load_training_state, rng_state, save_training_state, set_rng_state

logger = logging.getLogger(__name__)

# stops after which the run may go on under larger limits; "early_stopping" is final
INTERRUPTIONS = ("stop_after_steps", "signal", "time_budget")


@dataclass
class LoopConfig:
    epochs: int | None = 1          # None: no epoch limit (max_steps or the budget ends the run)
    max_steps: int = 0              # 0 = none
    time_budget_minutes: float = 0.0
    budget_clock: str = "wall"      # wall, or cpu (this process's CPU time)
    stop_after_steps: int = 0       # interrupt after this many steps of this invocation (resumable)
    eval_every_epochs: int = 1      # 0 = not at epoch ends
    eval_every_steps: int = 0
    save_every_steps: int = 0       # checkpoints are also written at every epoch end and at the stop
    patience: int = 0               # evaluations without improvement before stopping; 0 = off
    select_metric: str = "valid_loss"
    select_mode: str = "min"        # min or max
    log_every_steps: int = 0        # train records in metrics.jsonl; 0 = none
    keep_checkpoints: int = 1       # checkpoint-<step> folders kept; <= 0 keeps all
    progress: bool = True
    desc: str = "train"
    plot: bool = False              # curve.png after each evaluation

    def __post_init__(self) -> None:
        if self.select_mode not in ("min", "max"):
            raise ValueError(f"select_mode must be min or max, got {self.select_mode!r}")
        if self.budget_clock not in ("wall", "cpu"):
            raise ValueError(f"budget_clock must be wall or cpu, got {self.budget_clock!r}")


@dataclass
class LoopState:
    epoch: int = 0                  # epochs completed
    batch_in_epoch: int = 0         # batches of the current epoch completed
    step: int = 0                   # optimizer steps in total
    samples: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_epoch: float = 0.0
    bad_evals: int = 0
    last_eval_step: int = -1
    finished: bool = False          # stopped by its limits, not interrupted
    stop_reason: str | None = None
    train_seconds: float = 0.0      # wall seconds of training (evaluations included), across resumes
    train_cpu_seconds: float = 0.0  # the same in this process's CPU seconds
    history: list[dict[str, Any]] = field(default_factory=list)  # one line per evaluation

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoopState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class StepOutput:
    loss_sum: torch.Tensor          # this process's summed loss, detached
    tokens: int                     # what the logged loss is normalised by (global count)
    samples: int                    # examples of the global batch
    grad_norm: torch.Tensor | None = None


class Client:
    """What a training loop supplies. Hooks with a body are optional."""

    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    scaler: Any = None

    def epoch_batches(self, epoch: int) -> Sequence[Any]:
        raise NotImplementedError

    def train_step(self, batch: Any, state: LoopState) -> StepOutput:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError

    def save_model(self, folder: Path, best: bool) -> None:
        """Write the model (and the files that rebuild it) into ``folder``."""
        raise NotImplementedError

    def load_model(self, folder: Path) -> None:
        raise NotImplementedError

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra keys of a checkpoint's trainer_state.json (configs a resume checks)."""
        return {}

    def check_resume(self, saved: dict[str, Any], folder: Path) -> None:
        """Refuse a checkpoint that belongs to another configuration (raise ValueError)."""

    def on_epoch_start(self, epoch: int, state: LoopState) -> None:
        pass

    def on_step_end(self, state: LoopState) -> None:
        pass

    def can_be_best(self) -> bool:
        return True

    def on_best(self, metrics: dict[str, float]) -> None:
        pass


class Engine:
    def __init__(self, client: Client, cfg: LoopConfig, run_dir: str | Path | None, *, steps_per_epoch: int,
                 accelerator: Any = None):
        self.client, self.cfg = client, cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.acc = accelerator
        self.world = accelerator.num_processes if accelerator is not None else 1
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.main = self.rank == 0
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.state = LoopState()
        self.last_loss: float | None = None
        self._saved: dict[str, Any] | None = None
        self._stop_signal = False

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path | None:
        return self.run_dir / "metrics.jsonl" if self.run_dir is not None else None

    def start_fresh(self) -> None:
        """A new run: no checkpoints or log lines of an earlier one stay behind to be mistaken for its own."""
        if self.run_dir is not None and self.main:
            checkpoints.remove_all(self.run_dir)
            self.metrics_path.unlink(missing_ok=True)

    def save_checkpoint(self) -> None:
        if self.run_dir is None or self._saved == asdict(self.state):
            return  # nothing changed since the last save (an epoch end that is also a save step)
        self._saved = asdict(self.state)
        rngs = [rng_state()]
        if self.world > 1:
            from accelerate.utils import gather_object

            rngs = gather_object(rngs)
        if self.main:
            def write(tmp: Path) -> None:
                self.client.save_model(tmp, best=False)
                if self.client.optimizer is not None:
                    save_training_state(tmp, self.client.optimizer, self.client.scheduler, rngs, scaler=self.client.scaler)
                atomic_write_json(tmp / checkpoints.LOOP_FILE, {
                    "format": checkpoints.FORMAT, **asdict(self.state), "world_size": self.world,
                    **self.client.checkpoint_meta()}, indent=1)
            checkpoints.save(self.run_dir, self.state.step, write, keep=self.cfg.keep_checkpoints)
        self._barrier()

    def resume(self) -> bool:
        """Continue from ``<run>/last`` when it exists; False when there is nothing to resume."""
        if self.run_dir is None:
            return False
        d = checkpoints.last_dir(self.run_dir)
        if d is None:
            return False
        saved = checkpoints.read_loop_state(d)
        self.client.check_resume(saved, d)
        self.client.load_model(d)
        self.state = LoopState.from_json(saved)
        if not self.state.finished:
            self.state.stop_reason = None  # the interruption, not a reason to stay stopped
        rngs = None
        if self.client.optimizer is not None:
            if has_training_state(d):
                rngs, _ = load_training_state(d, self.client.optimizer, self.client.scheduler, scaler=self.client.scaler)
            elif (d / "optimizer.pt").is_file():
                rngs = self._load_pickled_state(d)
            else:
                from genrec.data import DataError

                raise DataError(d, "checkpoint has no optimizer state; it cannot be resumed")
        world = int(saved.get("world_size", 1))
        if world != self.world:
            logger.warning("checkpoint was written by %d processes, resuming with %d: dropout randomness will differ",
                           world, self.world)
        if rngs:
            set_rng_state(rngs[self.rank % len(rngs)])
        if self.main and self.metrics_path.is_file():
            # drop log lines written after the checkpoint by the interrupted run
            keep = [r for r in read_jsonl(self.metrics_path, tolerate_torn_tail=True) if r.get("step", 0) <= self.state.step]
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))
        if self.main:
            logger.info("resumed %s at step %d (epoch %d, batch %d)", self.run_dir, self.state.step,
                        self.state.epoch, self.state.batch_in_epoch)
        return True

    def _load_pickled_state(self, d: Path) -> list[dict[str, Any]]:
        # a generator run folder of an earlier version: pickles of our own, written by this project
        logger.info("resume: %s holds the earlier .pt state files; the next checkpoint is written in safetensors", d)
        c = self.client
        c.optimizer.load_state_dict(torch.load(d / "optimizer.pt", map_location="cpu", weights_only=False))
        c.scheduler.load_state_dict(torch.load(d / "scheduler.pt", map_location="cpu", weights_only=False))
        if c.scaler is not None and (d / "scaler.pt").is_file():
            c.scaler.load_state_dict(torch.load(d / "scaler.pt", weights_only=False))
        return torch.load(d / "rng_state.pt", weights_only=False)

    def save_best(self, metrics: dict[str, float]) -> None:
        epoch = self.epoch_float()
        if self.run_dir is not None and self.main:
            with atomic_dir(self.run_dir / checkpoints.BEST) as tmp:
                self.client.save_model(tmp, best=True)
                atomic_write_json(tmp / checkpoints.LOOP_FILE, {
                    "epoch": epoch, "step": self.state.step, "metric": self.cfg.select_metric,
                    "value": metrics.get(self.cfg.select_metric), "metrics": metrics,
                    **self.client.checkpoint_meta()}, indent=2)
        self.client.on_best(metrics)
        self._barrier()

    # -- evaluation ----------------------------------------------------------------------------
    def epoch_float(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / self.steps_per_epoch

    def _better(self, value: float) -> bool:
        best = self.state.best_metric
        return best is None or (value < best if self.cfg.select_mode == "min" else value > best)

    def evaluate(self) -> dict[str, float]:
        """Evaluate, track the best model, log; sets ``stop_reason`` when patience runs out."""
        t0 = time.perf_counter()
        metrics = self.client.evaluate()
        st, cfg = self.state, self.cfg
        st.last_eval_step = st.step
        epoch = self.epoch_float()
        value = metrics.get(cfg.select_metric)
        eligible = self.client.can_be_best()
        improved = value is not None and eligible and self._better(value)
        if value is None and eligible:
            # nothing held out: best/ simply follows the latest evaluation
            logger.warning("no validation metric %s; best/ holds the latest model", cfg.select_metric)
            self.save_best(metrics)
        if improved:
            st.best_metric, st.best_step, st.best_epoch, st.bad_evals = value, st.step, epoch, 0
            self.save_best(metrics)
        elif value is not None and eligible:
            st.bad_evals += 1
        st.history.append({"epoch": round(epoch, 3), "step": st.step, "seconds": round(st.train_seconds, 1),
                           **{k: round(v, 5) for k, v in metrics.items() if isinstance(v, float) and "/" not in k}})
        if self.main:
            if self.metrics_path is not None:
                append_jsonl(self.metrics_path, {"type": "eval", "step": st.step, "epoch": round(epoch, 4), **metrics,
                                                 "selected": cfg.select_metric, "best": st.best_metric,
                                                 "eval_seconds": round(time.perf_counter() - t0, 2)})
            shown = {k: round(v, 4) for k, v in metrics.items() if "/" not in k and isinstance(v, float)}
            logger.info("step %d epoch %.2f: %s%s", st.step, epoch, shown, " (best)" if improved else "")
            if cfg.plot:
                self.plot()
        if value is not None and cfg.patience and st.bad_evals >= cfg.patience:
            st.stop_reason = "early_stopping"
        return metrics

    # -- the loop --------------------------------------------------------------------------------
    def _limit(self) -> str | None:
        st, cfg = self.state, self.cfg
        if cfg.max_steps and st.step >= cfg.max_steps:
            return "max_steps"
        if cfg.epochs is not None and st.epoch >= cfg.epochs:
            return "epochs"
        return None

    def _stop_now(self, clock: RunClock, steps_here: int) -> str | None:
        """This step's stop decision; every process must agree, or a collective would hang."""
        cfg = self.cfg
        if cfg.max_steps and self.state.step >= cfg.max_steps:
            return "max_steps"
        if cfg.stop_after_steps and steps_here >= cfg.stop_after_steps:
            return "stop_after_steps"
        over = cfg.time_budget_minutes > 0 and clock.spent(cfg.budget_clock) >= cfg.time_budget_minutes * 60
        if self.acc is not None:
            flag = any_process(self.acc, self._stop_signal or over)
        else:
            flag = self._stop_signal or over
        if flag:
            return "signal" if self._stop_signal else "time_budget"
        return None

    def fit(self) -> LoopState:
        st, cfg = self.state, self.cfg
        if st.stop_reason == "early_stopping":
            logger.info("run %s already stopped early at step %d", self.run_dir, st.step)
            return st
        from tqdm.auto import tqdm

        handlers = self._catch_signals()
        total = cfg.max_steps or (cfg.epochs * self.steps_per_epoch if cfg.epochs is not None else None)
        bar = tqdm(total=total, initial=st.step, disable=not (self.main and cfg.progress), desc=cfg.desc,
                   dynamic_ncols=True)
        clock = RunClock(st.train_seconds, st.train_cpu_seconds)
        start_step = st.step
        interval = _Interval()
        st.stop_reason = self._limit()
        try:
            while st.stop_reason is None:
                epoch = st.epoch
                self.client.on_epoch_start(epoch, st)
                batches = self.client.epoch_batches(epoch)
                if len(batches) == 0:
                    raise ValueError("the epoch plan holds no batch")
                # leave when the epoch ends, so the next epoch gets its own plan
                while st.epoch == epoch and st.stop_reason is None:
                    out = self.client.train_step(batches[st.batch_in_epoch], st)
                    st.step += 1
                    st.batch_in_epoch += 1
                    st.samples += out.samples
                    st.train_seconds, st.train_cpu_seconds = clock.wall(), clock.cpu()
                    self.client.on_step_end(st)
                    interval.add(out)
                    if cfg.log_every_steps and (st.step % cfg.log_every_steps == 0 or st.step == total):
                        self._log_train(interval, out, bar)
                    bar.update(1)
                    reason = self._stop_now(clock, st.step - start_step)
                    if st.batch_in_epoch == len(batches):
                        st.epoch += 1
                        st.batch_in_epoch = 0
                        if reason is None:
                            reason = self._limit()
                        if cfg.eval_every_epochs and st.epoch % cfg.eval_every_epochs == 0:
                            self.evaluate()
                        if reason is None and st.stop_reason is None:
                            self.save_checkpoint()
                    elif cfg.eval_every_steps and st.step % cfg.eval_every_steps == 0:
                        self.evaluate()
                    if reason is not None and st.stop_reason is None:
                        st.stop_reason = reason
                    if st.stop_reason is None and cfg.save_every_steps and st.step % cfg.save_every_steps == 0:
                        self.save_checkpoint()
        finally:
            bar.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if st.step == start_step and st.last_eval_step == st.step and st.step > 0:
            return st  # resumed at its limits: nothing new to train, evaluate or save
        evaluating = cfg.eval_every_epochs or cfg.eval_every_steps
        # a run that ends between evaluations is evaluated once more, so best/ reflects its end
        # (not on an interruption: a resumed run must continue exactly as if none happened)
        if st.stop_reason in ("max_steps", "epochs", "time_budget") and evaluating and st.last_eval_step != st.step:
            self.evaluate()
            st.train_seconds, st.train_cpu_seconds = clock.wall(), clock.cpu()
        if not evaluating:
            self.save_best({})
        st.finished = st.stop_reason not in INTERRUPTIONS
        self.save_checkpoint()
        if self.main and self.metrics_path is not None:
            append_jsonl(self.metrics_path, {"type": "end", "step": st.step, "stop_reason": st.stop_reason,
                                             "train_seconds": round(st.train_seconds, 3)})
            if cfg.plot:
                self.plot()
        return st

    def _log_train(self, interval: "_Interval", out: StepOutput, bar) -> None:
        st = self.state
        total = interval.loss
        if self.acc is not None and self.world > 1:
            total = self.acc.reduce(total.clone(), reduction="sum")
        now = time.perf_counter()
        loss = float(total) / max(interval.tokens, 1)
        if self.main and self.metrics_path is not None:
            sched = self.client.scheduler
            append_jsonl(self.metrics_path, {
                "type": "train", "step": st.step, "epoch": round(self.epoch_float(), 4), "loss": loss,
                "lr": sched.get_last_lr()[0] if sched is not None else None,
                "grad_norm": None if out.grad_norm is None else float(out.grad_norm),
                "samples_per_s": interval.samples / max(now - interval.t0, 1e-9),
                "train_seconds": round(st.train_seconds, 3), "train_cpu_seconds": round(st.train_cpu_seconds, 3)})
        bar.set_postfix(loss=f"{loss:.4f}")
        self.last_loss = loss
        interval.reset(now)

    def _catch_signals(self) -> dict:
        handlers: dict = {}
        if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
            return handlers

        def on_signal(signum, _frame):
            # finish the step, checkpoint, stop; a second signal acts as usual
            self._stop_signal = True
            signal.signal(signum, handlers.get(signum, signal.SIG_DFL))
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, on_signal)
        return handlers

    def _barrier(self) -> None:
        if self.acc is not None:
            self.acc.wait_for_everyone()

    # -- the plot ------------------------------------------------------------------------------
    def plot(self) -> None:
        """``curve.png``: train and validation loss, and the selected metric when it is not a loss."""
        path = self.metrics_path
        if path is None or not path.is_file():
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        rows = read_jsonl(path, tolerate_torn_tail=True)
        sel = self.cfg.select_metric
        train = [(r["step"], r["loss"]) for r in rows if r.get("type") == "train"]
        valid = [(r["step"], r["valid_loss"]) for r in rows if r.get("type") == "eval" and "valid_loss" in r]
        chosen = [] if "loss" in sel else [(r["step"], r[sel]) for r in rows if r.get("type") == "eval" and sel in r]
        fig, axes = plt.subplots(1, 2 if chosen else 1, figsize=(10 if chosen else 6, 4), squeeze=False)
        ax = axes[0][0]
        if train:
            ax.plot(*zip(*train), label="train loss")
        if valid:
            ax.plot(*zip(*valid), "o-", label="valid loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if train or valid:
            ax.legend()
        ax.set_title(self.cfg.desc)
        if chosen:
            axes[0][1].plot(*zip(*chosen), "o-", color="tab:green")
            axes[0][1].set_xlabel("step")
            axes[0][1].set_ylabel(sel)
        fig.tight_layout()
        with atomic_output(self.run_dir / "curve.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)


class _Interval:
    """Loss, tokens and samples since the last train record (the loss stays on the device)."""

    def __init__(self) -> None:
        self.loss: torch.Tensor | float = 0.0
        self.reset(time.perf_counter())

    def add(self, out: StepOutput) -> None:
        self.loss = self.loss + out.loss_sum.detach()
        self.tokens += out.tokens
        self.samples += out.samples

    def reset(self, now: float) -> None:
        self.loss = 0.0
        self.tokens, self.samples, self.t0 = 0, 0, now
