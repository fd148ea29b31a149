"""Typed configs for the semantic-ID quantizers, and the argparse glue that lets CLI flags override them.

Defaults are the published MQL4GRec settings; small runs (the scripts, tests) override them with
flags. Every field becomes a ``--kebab-case`` flag; tuples take comma-separated values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.data.codes import MAX_LEVELS

QUANTIZER_KINDS = ("rqvae", "rqkmeans")
DISTANCE_NAMES = ("l2", "cosine")
MODALITIES = ("text", "image")
BEST_METRICS = ("val_recon", "val_loss", "collision_rate")
SCHEDULERS = ("constant", "cosine")


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"help": help})


@dataclass
class QuantizerConfig:
    """Which quantizer strategy, its shape, and how it assigns codes while training."""

    kind: str = _opt("rqvae", "rqvae (MLP auto-encoder + residual VQ) or rqkmeans (residual k-means, no network)")
    levels: int = _opt(4, "code levels")
    codebook_size: int = _opt(256, "codes per level")
    code_dim: int = _opt(32, "rqvae latent / codeword size (rqkmeans quantizes the embedding itself)")
    hidden_dims: tuple[int, ...] = _opt((2048, 1024, 512, 256, 128, 64), "rqvae encoder hidden sizes; the decoder mirrors them")
    dropout: float = _opt(0.0, "dropout after each hidden layer")
    batch_norm: bool = _opt(False, "batch-norm before each hidden activation")
    distance: str = _opt("l2", "codebook distance: l2 (squared Euclidean) or cosine")
    beta: float = _opt(0.25, "commitment weight")
    quant_weight: float = _opt(1.0, "weight of the codebook/commitment loss against reconstruction")
    sinkhorn_eps: tuple[float, ...] | None = _opt(None, "Sinkhorn epsilon per level while training, 0 = nearest code (default 0,...,0,0.003)")
    sinkhorn_iters: int = _opt(50, "Sinkhorn-Knopp iterations")
    kmeans_iters: int = _opt(100, "Lloyd iterations for codebook initialisation / rqkmeans")
    kmeans_samples: int = _opt(100_000, "items sampled (at random, from all training items) for the k-means init")

    def __post_init__(self) -> None:
        if self.sinkhorn_eps is None:
            self.sinkhorn_eps = tuple([0.0] * (self.levels - 1) + [0.003]) if self.levels > 0 else ()
        self.sinkhorn_eps = tuple(float(e) for e in self.sinkhorn_eps)
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)

    def validate(self) -> None:
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"quantizer kind {self.kind!r}: expected one of {', '.join(QUANTIZER_KINDS)}")
        if self.distance not in DISTANCE_NAMES:
            raise ValueError(f"distance {self.distance!r}: expected one of {', '.join(DISTANCE_NAMES)}")
        if not 1 <= self.levels <= MAX_LEVELS:
            # the code spec's letters: one is kept free for the dedup level
            raise ValueError(f"levels must be between 1 and {MAX_LEVELS}, got {self.levels}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {self.codebook_size}")
        if self.code_dim < 1 or any(h < 1 for h in self.hidden_dims):
            raise ValueError("code_dim and hidden_dims must be positive")
        if len(self.sinkhorn_eps) != self.levels:
            raise ValueError(f"sinkhorn_eps has {len(self.sinkhorn_eps)} values for {self.levels} levels")
        if any(e < 0 for e in self.sinkhorn_eps):
            raise ValueError("sinkhorn_eps values must be >= 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kmeans_iters < 1 or self.kmeans_samples < 1 or self.sinkhorn_iters < 1:
            raise ValueError("kmeans_iters, kmeans_samples and sinkhorn_iters must be positive")


@dataclass
class TrainConfig:
    """One quantizer training run (one modality, one or several datasets)."""

    data_root: str = _opt("data", "data root holding <ds>/<ds>.emb-<model>.npy")
    datasets: tuple[str, ...] = _opt((), "dataset name(s); several = one shared quantizer (multi-dataset mode)")
    embedding: str = _opt("", "embedding model name: reads <ds>.emb-<embedding>.npy")
    modality: str = _opt("text", "text or image (decides the code token letters)")
    lr: float = _opt(1e-3, "AdamW learning rate")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    batch_size: int = _opt(2048, "items per step")
    epochs: int = _opt(500, "training epochs (rqvae)")
    scheduler: str = _opt("constant", "learning-rate schedule after warmup: constant or cosine")
    warmup_epochs: int = _opt(0, "linear warmup epochs")
    # Not in the paper (0 reproduces it): without restarts the first AdamW steps strand most k-means
    # codewords (measured on Scientific: 48/256 level-1 codes used after 30 epochs, 256/256 with).
    dead_code_restart: int = _opt(1, "every N epochs move codewords no item is nearest to onto random residuals (0 = off, as published)")
    ae_warmup_epochs: int = _opt(0, "train the auto-encoder alone for N epochs, then k-means-initialise the codebooks "
                                    "on its latents (0 = init on the untrained encoder, as published)")
    max_grad_norm: float = _opt(0.0, "clip the gradient norm (0 = off)")
    seed: int = _opt(42, "seed for the split, init, k-means and shuffling")
    holdout: float = _opt(0.05, "fraction of items held out to measure reconstruction")
    eval_every_epochs: int = _opt(10, "evaluate (and save 'last') every N epochs")
    best_metric: str = _opt("val_recon", "metric that picks the 'best' checkpoint (lower is better)")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1, ...")
    num_threads: int = _opt(0, "torch CPU threads (0 = torch default); 1 is often fastest on a busy machine")
    run_dir: str = _opt("", "output folder (default log/index/<datasets>-<modality>-<kind>)")
    resume: bool = _opt(False, "continue from <run_dir>/last")
    overwrite: bool = _opt(False, "replace the best/ and last/ an earlier run left in <run_dir>")
    progress: bool = _opt(True, "show a tqdm progress bar")
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def validate(self) -> None:
        self.quantizer.validate()
        if not self.datasets:
            raise ValueError("no dataset given (--dataset NAME or --datasets A,B,C)")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets listed twice: {','.join(self.datasets)}")
        if not self.embedding:
            raise ValueError("no embedding given (--embedding MODEL reads <ds>.emb-MODEL.npy)")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality {self.modality!r}: expected text or image")
        if self.best_metric not in BEST_METRICS:
            raise ValueError(f"best_metric {self.best_metric!r}: expected one of {', '.join(BEST_METRICS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.dead_code_restart < 0 or self.ae_warmup_epochs < 0:
            raise ValueError("dead_code_restart and ae_warmup_epochs must be >= 0")
        if self.batch_size < 1 or self.epochs < 0 or self.eval_every_epochs < 1 or self.warmup_epochs < 0:
            raise ValueError("batch_size and eval_every_epochs must be positive, epochs and warmup_epochs >= 0")

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else default_run_dir(self.datasets, self.modality, self.quantizer.kind)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        from genrec.utils.fields import canonical

        raw = canonical(raw, "quantizer training config")
        q = QuantizerConfig(**_known(QuantizerConfig, raw.pop("quantizer", {}) or {}))
        return cls(quantizer=q, **_known(cls, raw))


def default_run_dir(datasets: typing.Sequence[str], modality: str, kind: str) -> Path:
    return Path("log") / "index" / f"{'+'.join(datasets)}-{modality}-{kind}"


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            v = raw[f.name]
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


# -- argparse glue (the shared helper) ----------------------------------------------------------
def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: typing.Collection[str] = ()) -> None:
    """One flag per field; only flags actually given override the config."""
    from genrec.utils.cli_args import add_dataclass_flags

    add_dataclass_flags(parser, cls, skip=skip, group=cls.__name__)


def overrides_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    from genrec.utils.cli_args import given_flags

    return given_flags(args, cls)


def load_json_config(path: str | Path) -> dict[str, Any]:
    from genrec.data import DataError

    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "config file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object")
    return raw
