"""Rank items for evaluation samples with the constrained beam search and score HR/NDCG.

Full ranking over all users: every sample is decoded, its target looked up in the ranked list
(rank 0 = not among the returned items). Items whose codes are shared (code files used without the
dedup token) all receive the beam's score and are listed in ascending item id after each other;
with ``dedup_codes`` (the default) every code names one item.

Several processes (``accelerate launch``): the samples are sharded with an Accelerate-prepared
DataLoader, results are collected with ``accelerator.gather_for_metrics`` (which drops the padding
of uneven splits), and the gathered sample indices are checked to cover every sample exactly once.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.data import RecDataset, load_dataset
from genrec.data_pipeline import build_sources  # noqa: F401  (the one source encoder; re-exported)
from genrec.decoding import CodeTrie, beam_search, pad_sources
from genrec.metrics import DEFAULT_KS, metrics_from_ranks, ranks_from_lists
from genrec.tasks import Task, dataset_codes

logger = logging.getLogger(__name__)

__all__ = ["LoadedRun", "build_sources", "evaluate_samples", "leaves_to_items", "load_run", "open_run", "rank_samples",
           "task_direction"]


def leaves_to_items(trie: CodeTrie, leaves: torch.Tensor, scores: torch.Tensor, topk: int
                    ) -> tuple[list[list[int]], list[list[float]]]:
    """Map each row's ranked leaves to items (at most ``topk``); a shared code yields all its items,
    ascending id, each with the beam's score."""
    leaves, scores = leaves.cpu(), scores.cpu()
    items_out: list[list[int]] = []
    scores_out: list[list[float]] = []
    if trie.unique:
        first = trie.leaf_items[trie.leaf_ptr[:-1]].cpu()
        mapped = torch.where(leaves >= 0, first[leaves.clamp(min=0)], -1)
        for row, srow in zip(mapped.tolist(), scores.tolist()):
            keep = [(i, s) for i, s in zip(row, srow) if i >= 0][:topk]
            items_out.append([i for i, _ in keep])
            scores_out.append([s for _, s in keep])
        return items_out, scores_out
    ptr, members = trie.leaf_ptr.tolist(), trie.leaf_items.tolist()
    for row, srow in zip(leaves.tolist(), scores.tolist()):
        its: list[int] = []
        scs: list[float] = []
        for leaf, s in zip(row, srow):
            if leaf < 0 or len(its) >= topk:
                break
            for item in members[ptr[leaf]:ptr[leaf + 1]]:
                if len(its) >= topk:
                    break
                its.append(item)
                scs.append(s)
        items_out.append(its)
        scores_out.append(scs)
    return items_out, scores_out


def penalise_popularity(ranked: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], counts: np.ndarray,
                        beta: float) -> tuple[list[list[int]], list[list[float]]]:
    """Re-rank each user's decoded items by ``score - beta * log(1 + training count)``.

    A post-hoc popularity correction (positive ``beta`` lifts rarely seen items); it can only reorder
    the items the beam returned, so decode with more beams than the K of the metrics.
    """
    if not np.isfinite(beta):
        raise ValueError(f"popularity penalty must be finite, got {beta}")
    out_items, out_scores = [], []
    for items, sc in zip(ranked, scores):
        adj = np.asarray(sc, dtype=np.float64) - beta * np.log1p(counts[np.asarray(items, dtype=np.int64)])
        order = np.argsort(-adj, kind="stable")
        out_items.append([int(items[i]) for i in order])
        out_scores.append([float(adj[i]) for i in order])
    return out_items, out_scores


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _decode_batch(model, trie: CodeTrie, sources: Sequence[Sequence[int]], beams: int, topk: int, pad_id: int,
                  device: torch.device) -> tuple[list[list[int]], list[list[float]]]:
    ids, mask = pad_sources(sources, pad_id, device)
    res = beam_search(model, ids, mask, trie, beams)
    return leaves_to_items(trie, res.leaves, res.scores, topk)


def rank_samples(model, tokenizer, trie: CodeTrie, sources: Sequence[Sequence[int]], *, beams: int = 20,
                 topk: int = 20, batch_size: int = 32, progress: bool = False
                 ) -> tuple[list[list[int]], list[list[float]]]:
    """Ranked items and scores for every source, in input order (one process)."""
    device = _model_device(model)
    trie = trie.to(device)
    order = np.argsort([len(s) for s in sources], kind="stable")  # similar lengths share a batch: less padding
    ranked: list[list[int]] = [[] for _ in sources]
    scores: list[list[float]] = [[] for _ in sources]
    bar = tqdm(total=len(sources), desc="decode", unit="user", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        its, scs = _decode_batch(model, trie, [sources[i] for i in idx], beams, topk, tokenizer.pad_token_id, device)
        for i, a, b in zip(idx, its, scs):
            ranked[i], scores[i] = a, b
        bar.update(len(idx))
    bar.close()
    return ranked, scores


def _rank_distributed(model, tokenizer, trie: CodeTrie, sources: Sequence[Sequence[int]], accelerator, *, beams: int,
                      topk: int, batch_size: int, progress: bool) -> tuple[list[list[int]], list[list[float]]]:
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    device = accelerator.device
    trie = trie.to(device)
    order = np.argsort([len(s) for s in sources], kind="stable").tolist()
    # accelerate's prepare_data_loader (not Accelerator.prepare, which would keep a reference per
    # evaluation): uneven splits are padded, and gather_for_metrics drops the padding again.
    loader = prepare_data_loader(
        DataLoader(order, batch_size=batch_size, shuffle=False, collate_fn=lambda b: torch.tensor(b, dtype=torch.long)),
        num_processes=accelerator.num_processes, process_index=accelerator.process_index, put_on_device=False,
        even_batches=True)
    got_idx, got_items, got_scores = [], [], []
    bar = tqdm(total=len(sources), desc="decode", unit="user", disable=not (progress and accelerator.is_main_process),
               leave=False)
    for idx in loader:
        its, scs = _decode_batch(model, trie, [sources[i] for i in idx.tolist()], beams, topk,
                                 tokenizer.pad_token_id, device)
        items_t = torch.full((len(idx), topk), -1, dtype=torch.long)
        scores_t = torch.full((len(idx), topk), -math.inf, dtype=torch.float32)
        for r, (a, b) in enumerate(zip(its, scs)):
            items_t[r, :len(a)] = torch.tensor(a, dtype=torch.long)
            scores_t[r, :len(b)] = torch.tensor(b, dtype=torch.float32)
        g = accelerator.gather_for_metrics((idx.to(device), items_t.to(device), scores_t.to(device)))
        got_idx.append(g[0].cpu())
        got_items.append(g[1].cpu())
        got_scores.append(g[2].cpu())
        bar.update(len(g[0]))
    bar.close()
    idx_all = torch.cat(got_idx).tolist()
    items_all = torch.cat(got_items).tolist()
    scores_all = torch.cat(got_scores).tolist()
    ranked: list[list[int] | None] = [None] * len(sources)
    scores: list[list[float] | None] = [None] * len(sources)
    duplicates = 0
    for i, its, scs in zip(idx_all, items_all, scores_all):
        if ranked[i] is not None:
            duplicates += 1  # padding of an uneven split that was not dropped: same sample, same result
            continue
        keep = [k for k, item in enumerate(its) if item >= 0]
        ranked[i], scores[i] = [its[k] for k in keep], [scs[k] for k in keep]
    missing = [i for i, r in enumerate(ranked) if r is None]
    if missing:
        raise RuntimeError(f"distributed evaluation lost {len(missing)} of {len(sources)} samples "
                           f"(first: {missing[:5]})")
    if duplicates:
        logger.warning("dropped %d duplicated samples after gathering", duplicates)
    return ranked, scores  # type: ignore[return-value]


def evaluate_samples(
    model,
    tokenizer,
    codes: Sequence[Sequence[str]],
    sources: Sequence[Sequence[int]],
    targets: Sequence[int],
    *,
    beams: int = 20,
    topk: int = 20,
    batch_size: int = 32,
    ks: Sequence[int] = DEFAULT_KS,
    accelerator=None,
    trie: CodeTrie | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], list[list[int]], list[list[float]]]:
    """Decode every source, rank items, and compute HR@K / NDCG@K over all samples.

    ``codes``: the target modality's codes indexed by item id (dedup applied as in training).
    ``sources``: token ids of each source, ending with ``</s>``. ``targets``: true item ids.
    Returns ``(metrics, ranked_items, scores)``; ``scores`` are total log-probabilities of the beams.
    With an ``accelerator`` of several processes, every process returns the full results.
    """
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources for {len(targets)} targets")
    if not sources:
        raise ValueError("no samples to evaluate")
    if topk < 1 or beams < 1:
        raise ValueError("beams and topk must be >= 1")
    if beams < topk:
        logger.warning("beams=%d < topk=%d: at most %d items per user (more with shared codes)", beams, topk, beams)
    if max(ks) > topk:
        logger.warning("HR/NDCG@%d with only the top %d items returned", max(ks), topk)
    if trie is None:
        trie = CodeTrie.from_codes(tokenizer, codes)
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    if accelerator is not None and accelerator.num_processes > 1:
        ranked, scores = _rank_distributed(model, tokenizer, trie, sources, accelerator, beams=beams, topk=topk,
                                           batch_size=batch_size, progress=progress)
    else:
        ranked, scores = rank_samples(model, tokenizer, trie, sources, beams=beams, topk=topk,
                                      batch_size=batch_size, progress=progress)
    metrics = metrics_from_ranks(ranks_from_lists(ranked, targets), ks)
    return metrics, ranked, scores


# -- run folders -------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    """A training run folder (``config.json``, ``tokenizer/``, ``best/``) opened for inference.

    :func:`open_run` reads the config and tokenizer (cheap, so data errors surface before the model
    loads); :meth:`load_model` loads the weights; :func:`load_run` does both.
    """

    dir: Path
    config: dict[str, Any]
    tokenizer: Any
    model: Any = None
    model_dir: Path | None = None

    def load_dataset(self, name: str, data_root: str | Path | None = None) -> RecDataset:
        """The dataset as the run saw it (its data root and explicit code files unless overridden)."""
        cfg = self.config
        trained = cfg.get("datasets") or []
        if trained and name not in trained:
            logger.warning("run %s was trained on %s, not %s", self.dir, ", ".join(trained), name)
        root = data_root if data_root is not None else cfg.get("data_root", "data")
        # explicit code files are only valid for the (single) dataset the run was trained on
        same = trained == [name]
        ds = load_dataset(root, name, text_codes=cfg.get("text_codes") if same else None,
                          image_codes=cfg.get("image_codes") if same else None)
        from genrec.run_checks import check_code_files

        check_code_files(cfg, self.dir, ds)
        return ds

    def codes(self, dataset: RecDataset) -> dict[str, list[tuple[str, ...]]]:
        return dataset_codes(dataset, dedup=bool(self.config.get("dedup_codes", True)))

    @property
    def max_history(self) -> int:
        return int(self.config.get("max_history", 20))

    def load_model(self, checkpoint: str = "best", device: str | torch.device | None = None) -> Any:
        from transformers.utils import logging as hf_logging

        from genrec.model import load_model

        model_dir = resolve_model_dir(self.dir, checkpoint)
        hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr would bury CLI output
        model = load_model(model_dir)
        if model.config.vocab_size != len(self.tokenizer):
            raise ValueError(f"{model_dir}: model vocabulary ({model.config.vocab_size}) does not match the run's "
                             f"tokenizer ({len(self.tokenizer)})")
        if device is not None:
            model = model.to(device)
        self.model, self.model_dir = model.eval(), model_dir
        return self.model


def resolve_model_dir(run_dir: Path, checkpoint: str = "best") -> Path:
    """``best`` (default), ``last`` (the newest ``checkpoint-<step>``) or a sub-folder of the run."""
    candidates = {"best": run_dir / "best", "last": run_dir / "last"}
    path = candidates.get(checkpoint, run_dir / checkpoint)
    if not (path / "config.json").is_file():
        hint = "" if checkpoint != "best" else " (training writes it at the first evaluation; try --checkpoint last)"
        raise FileNotFoundError(f"{path}: no saved model (config.json + weights){hint}")
    return path


def open_run(run_dir: str | Path) -> LoadedRun:
    """Read a run folder's config and tokenizer (no weights yet)."""
    from genrec.tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not found (is {run_dir} a training run folder?)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    if not (run_dir / "tokenizer").is_dir():
        raise FileNotFoundError(f"{run_dir / 'tokenizer'}: tokenizer folder not found")
    return LoadedRun(dir=run_dir, config=config, tokenizer=load_tokenizer(run_dir / "tokenizer"))


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device | None = None) -> LoadedRun:
    run = open_run(run_dir)
    run.load_model(checkpoint, device)
    return run


def task_direction(task: Task, direction: int | None) -> tuple[int, str]:
    """Which direction of ``task`` to evaluate, and the name its result files use."""
    if task.kind != "seq":
        raise ValueError(f"task {task.name} maps one item to itself in the other modality; evaluate a sequence task "
                         "(seqrec, seqimage, seqitem2image, seqimage2item, fusionseqrec, fgfusionseqrec)")
    d = 0 if direction is None else direction
    if not 0 <= d < len(task.directions):
        raise ValueError(f"task {task.name} has {len(task.directions)} direction(s); --direction must be 0.."
                         f"{len(task.directions) - 1}")
    if len(task.directions) == 1:
        return d, task.name
    dd = task.directions[d]
    return d, f"{task.name}.{dd.source}2{dd.target}"
