"""Recommend the next items for a history with a trained run.

    python -m genrec.recommend --ckpt log/<run> --dataset Instruments --history 12 873 40 --topk 10
    python -m genrec.recommend --ckpt log/<run> --dataset Instruments --history B002SQJL9U B00D3QFHN8

History items are item ids (0-based, as in the dataset files) or original ids/ASINs from
``<ds>.item2id`` (``--history-type auto`` decides per entry and refuses an entry that could be
both: an all-digit original id that is also a valid item id, ``0 <= id < items``, of another item;
a larger number such as an ISBN-style ASIN is read as the original id), oldest first; the most recent ``max_history`` items of the run's config are used. ``--task``
picks the text-code model (``seqrec``), the image-code model (``seqimage``), or ``fused`` (both,
merged with ``genrec.fusion``'s rule for the run: ``rawprob`` under the constrained objective, else ``prob``). Titles are shown when ``<ds>.item.json`` exists.

In Python::

    from genrec.recommend import Recommender, recommend
    recs = recommend("log/run", "Instruments", history=["B002SQJL9U", 17], topk=10)
    rec = Recommender("log/run", "Instruments")          # load once, call many times
    rec.recommend([3, 17, 42], topk=5)
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from genrec.data.errors import DataError
from genrec.run_checks import check_trained
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags

logger = logging.getLogger("genrec.recommend")

TASKS = ("seqrec", "seqimage", "fused")


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item: int
    score: float            # total log-probability of the code (fused: log of the mixed, renormalised probability)
    original_id: str | None  # ASIN / original id from <ds>.item2id, when known
    title: str | None


class Recommender:
    """A run and a dataset loaded once; :meth:`recommend` decodes one history at a time."""

    def __init__(self, ckpt: str | Path, dataset: str, *, data_root: str | Path | None = None,
                 checkpoint: str = "best", device: str | torch.device | None = None, beams: int = 20):
        from genrec.evaluation import open_run

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.run = open_run(ckpt)
        self.dataset = self.run.load_dataset(dataset, data_root)
        self.codes = self.run.codes(self.dataset)
        self.run.load_model(checkpoint, device=device)
        self.beams = beams
        self._tries: dict[str, object] = {}
        self._id2orig = {v: k for k, v in (self.dataset.item2id or {}).items()}

    # -- history parsing -----------------------------------------------------------------------
    def resolve_history(self, history: Sequence[int | str], history_type: str = "auto") -> list[int]:
        """Item ids of ``history`` entries (ids or original ids/ASINs); clear errors for unknown ones."""
        if history_type not in ("auto", "id", "asin"):
            raise ValueError(f"history type must be auto, id or asin, not {history_type!r}")
        if not history:
            raise ValueError("empty history: give at least one item the user interacted with")
        n = self.dataset.num_items
        item2id = self.dataset.item2id or {}
        out = []
        for entry in history:
            as_id = None
            if isinstance(entry, int) and not isinstance(entry, bool):
                as_id = entry
            elif isinstance(entry, str) and entry.strip().lstrip("-").isdigit():
                as_id = int(entry.strip())
            key = str(entry).strip()
            known_orig = key in item2id
            # An all-digit ASIN/ISBN (1938146905) is only ambiguous when it is also a valid item id.
            valid_id = as_id is not None and 0 <= as_id < n
            if history_type == "asin" or (history_type == "auto" and (as_id is None or (known_orig and not valid_id))):
                if not known_orig:
                    where = (f"{self.dataset.name}.item2id" if item2id
                             else f"(dataset {self.dataset.name} has no item2id map)")
                    raise ValueError(f"unknown item {key!r}: not an item id and not an original id/ASIN in {where}")
                out.append(item2id[key])
                continue
            if history_type == "auto" and known_orig and valid_id and item2id[key] != as_id:
                raise ValueError(f"history entry {key!r} is both item id {as_id} and the original id of item "
                                 f"{item2id[key]}; choose with --history-type id or asin")
            if not valid_id:
                raise ValueError(f"unknown item id {key!r}: dataset {self.dataset.name} has item ids 0..{n - 1}")
            out.append(as_id)
        return out

    # -- decoding ------------------------------------------------------------------------------
    def _trie(self, modality: str):
        from genrec.decoding import CodeTrie

        if modality not in self._tries:
            self._tries[modality] = CodeTrie.from_codes(self.run.tokenizer, self.codes[modality]).to(
                next(self.run.model.parameters()).device)
        return self._tries[modality]

    def _rank(self, task_name: str, items: list[int], k: int) -> tuple[list[int], list[float]]:
        from genrec.data import Sample
        from genrec.data_pipeline import build_sources
        from genrec.evaluation import rank_samples
        from genrec.tasks import get_task

        task = get_task(task_name)
        d = task.directions[0]
        check_trained(self.run.config, self.run.dir, self.dataset.name, [task_name], (d.source, d.target))
        for modality in (d.source, d.target):
            if modality not in self.codes:
                raise DataError(self.dataset.dir, f"dataset {self.dataset.name} has no {modality} codes, "
                                f"which task {task_name} needs")
        source = build_sources(self.run.tokenizer, task, self.codes, [Sample(-1, tuple(items), items[-1])])[0]
        ranked, scores = rank_samples(self.run.model, self.run.tokenizer, self._trie(d.target), [source],
                                      beams=max(self.beams, k), topk=k, batch_size=1)
        return ranked[0], scores[0]

    def recommend(self, history: Sequence[int | str], topk: int = 10, *, task: str = "seqrec",
                  exclude_history: bool = False, history_type: str = "auto") -> list[Recommendation]:
        """The ``topk`` most likely next items after ``history`` (oldest first)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        if topk < 1:
            raise ValueError("topk must be >= 1")
        items = self.resolve_history(history, history_type)
        cap = self.run.max_history
        items = items[-cap:] if cap > 0 else items
        # ask for more when seen items will be dropped, so the list still has topk entries if possible
        k = topk + (len(set(items)) if exclude_history else 0)
        if task == "fused":
            from genrec.fusion import FusionConfig, fuse_lists, rule_for_run

            ranked, scores = fuse_lists([self._rank("seqrec", items, k), self._rank("seqimage", items, k)],
                                        FusionConfig(rule=rule_for_run(self.run.dir), topk=k))
        else:
            ranked, scores = self._rank(task, items, k)
        seen = set(items) if exclude_history else set()
        out = []
        for item, score in zip(ranked, scores):
            if item in seen:
                continue
            out.append(Recommendation(rank=len(out) + 1, item=item, score=float(score),
                                      original_id=self._id2orig.get(item), title=self.dataset.item_title(item)))
            if len(out) == topk:
                break
        return out


def recommend(ckpt: str | Path, dataset: str, history: Sequence[int | str], topk: int = 10, *,
              task: str = "seqrec", data_root: str | Path | None = None, checkpoint: str = "best",
              beams: int = 20, exclude_history: bool = False, history_type: str = "auto",
              device: str | torch.device | None = None) -> list[Recommendation]:
    """One-shot: load the run and dataset, recommend for one history (use :class:`Recommender` for many)."""
    if not history:  # fail before loading anything
        raise ValueError("empty history: give at least one item the user interacted with")
    rec = Recommender(ckpt, dataset, data_root=data_root, checkpoint=checkpoint, device=device, beams=beams)
    return rec.recommend(history, topk, task=task, exclude_history=exclude_history, history_type=history_type)


def format_recommendations(recs: Sequence[Recommendation]) -> str:
    lines = ["| rank | item | original id | probability | title |", "|---|---|---|---|---|"]
    import math

    for r in recs:
        lines.append(f"| {r.rank} | {r.item} | {r.original_id or '-'} | {math.exp(r.score):.4g} | {r.title or '-'} |")
    return "\n".join(lines)


@dataclass
class RecommendArgs:
    """The flags of ``python -m genrec.recommend``."""

    ckpt: str = flag("", "run folder log/<run>", required=True)
    dataset: str = flag("Synthetic", "dataset name")
    history: list[str] = flag([], "item ids or original ids/ASINs, oldest first (commas also separate)", nargs="*")
    history_type: str = flag("auto", "how a history entry is read", choices=("auto", "id", "asin"))
    topk: int = flag(10, "items to recommend")
    task: str = flag("seqrec", "seqrec (text codes), seqimage (image codes) or fused (both)", choices=TASKS)
    beams: int = flag(20, "beam size (raised to --topk when smaller)")
    exclude_history: bool = flag(False, "do not recommend items already in the history")
    checkpoint: str = flag("best", "best, last, or a sub-folder of the run")
    data_root: str | None = flag(None, "override the run's data root")
    cpu: bool = flag(False, "run on the CPU even when a GPU is present")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genrec.recommend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(p, RecommendArgs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = RecommendArgs(**given_flags(build_parser().parse_args(argv), RecommendArgs))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    history = [h for entry in args.history for h in entry.split(",") if h.strip()]
    try:
        recs = recommend(args.ckpt, args.dataset, history, args.topk, task=args.task, data_root=args.data_root,
                         checkpoint=args.checkpoint, beams=args.beams, exclude_history=args.exclude_history,
                         history_type=args.history_type, device="cpu" if args.cpu else None)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"genrec.recommend: error: {e}", file=sys.stderr)
        return 2
    print(format_recommendations(recs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
