"""Late fusion of the text-code (seqrec) and image-code (seqimage) ranked lists.

    python -m genrec.fusion --ckpt log/<run> --dataset Instruments [--rule prob]

Each evaluation run (``genrec.evaluate``) stores, per user, its ranked items with the beam scores
(total log-probability of the item's code, so ``exp(score)`` is the sequence probability the model
gives it). Fusion merges the two lists per user by one of these rules (``--rule``):

- ``prob`` (default): a mixture of the two models' next-item distributions. Each list's scores are
  turned into probabilities renormalised over the items that list returned
  (``p_m(i) = exp(s_m(i)) / sum_j exp(s_m(j))``, the model's posterior given its beam), then
  ``score(i) = log(sum_m w_m * p_m(i))`` with the weights scaled to sum to 1 (so ``exp(score)`` is a
  probability). An item only one list found gets only that list's contribution (its probability under the other model is below that model's beam cut-off, counted
  as 0). Renormalising makes the two lists comparable even when their codes have different lengths
  (text codes carry a fifth dedup token, image codes do not, and every extra token multiplies a
  sequence probability by a factor below 1).
- ``rawprob``: the same sum without renormalising, ``log(sum_m w_m * exp(s_m(i)))``: the plain
  sum of sequence probabilities; favours the modality with shorter or more confident codes. For
  runs trained with the ``constrained`` objective each list's ``exp(score)`` already is the
  model's probability of the item (its decoder only spreads mass over valid codes), so this is the
  true mixture of the two item distributions, truncated to the beams; ``--rule auto`` (the CLI's
  default) picks it for such runs and ``prob`` for the others.
- ``rrf``: reciprocal-rank fusion, ``sum_m w_m / (k + rank_m(i))`` (``--rrf-k``, default 60); uses
  only ranks, robust when the two models are calibrated differently.
- ``published``: MQL4GRec's rule, for comparison: an item in both lists gets the mean of its two
  log-probabilities plus ``--bonus`` (default 1.0), others keep their single score.

Ties are broken by ascending item id, so results are deterministic. Items are the ground-truth
entities: with non-unique codes each item sharing a beam's code is its own entry (all with the beam's
score, see ``genrec.evaluation``), and the target is always the true item id.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from genrec.data.errors import DataError
from genrec.metrics import DEFAULT_KS, format_table, metrics_from_ranks, ranks_from_lists
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags
from genrec.utils.io import atomic_write_json

logger = logging.getLogger("genrec.fusion")

RULES = ("prob", "rawprob", "rrf", "published")


@dataclass
class FusionConfig:
    rule: str = "prob"
    weights: tuple[float, ...] = (1.0, 1.0)
    rrf_k: float = 60.0
    bonus: float = 1.0
    topk: int = 20

    def check(self, n_lists: int = 2) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown fusion rule {self.rule!r}; choose from {', '.join(RULES)}")
        if len(self.weights) != n_lists:
            raise ValueError(f"{len(self.weights)} weights for {n_lists} ranked lists")
        if any(w < 0 for w in self.weights) or not any(w > 0 for w in self.weights):
            raise ValueError("fusion weights must be >= 0 and not all 0")
        if self.rule == "published" and n_lists != 2:
            raise ValueError("the published rule merges exactly two lists")
        if self.rrf_k < 0:
            raise ValueError("--rrf-k must be >= 0")
        if self.topk < 1:
            raise ValueError("--topk must be >= 1")


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def fuse_lists(lists: Sequence[tuple[Sequence[int], Sequence[float]]], config: FusionConfig
               ) -> tuple[list[int], list[float]]:
    """Merge several ``(items, scores)`` ranked lists of one user into one list (best first)."""
    config.check(len(lists))
    fused: dict[int, float] = {}
    if config.rule in ("prob", "rawprob"):
        terms: dict[int, list[float]] = {}
        total = sum(config.weights)  # mixture weights sum to 1, so a fused score is a log-probability
        for w, (items, scores) in zip(config.weights, lists):
            if w == 0:
                continue
            best: dict[int, float] = {}
            for item, s in zip(items, scores):
                # an item listed twice in one list (never with our decoder) counts once, at its best
                best[item] = max(s, best.get(item, -math.inf))
            lw = math.log(w / total)
            if config.rule == "prob" and best:
                lw -= _logsumexp(list(best.values()))  # renormalise over the list's items
            for item, s in best.items():
                terms.setdefault(item, []).append(lw + s)
        for item, t in terms.items():
            fused[item] = _logsumexp(t)
    elif config.rule == "rrf":
        for w, (items, _scores) in zip(config.weights, lists):
            seen = set()
            for rank, item in enumerate(items, start=1):
                if item in seen:
                    continue
                seen.add(item)
                fused[item] = fused.get(item, 0.0) + w / (config.rrf_k + rank)
    else:  # published
        (ia, sa), (ib, sb) = lists
        a: dict[int, float] = {}
        b: dict[int, float] = {}
        for d, its, scs in ((a, ia, sa), (b, ib, sb)):
            for item, s in zip(its, scs):
                d.setdefault(item, s)  # first (best) occurrence
        for item in set(a) | set(b):
            if item in a and item in b:
                fused[item] = (a[item] + b[item]) / 2 + config.bonus
            else:
                fused[item] = a.get(item, b.get(item))
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:config.topk]
    return [i for i, _ in ranked], [s for _, s in ranked]


def _check_same_users(a: list[dict[str, Any]], b: list[dict[str, Any]], names: tuple[str, str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} users, {names[1]} has {len(b)}: evaluate both on the same users")
    for k, (x, y) in enumerate(zip(a, b)):
        if x["user_index"] != y["user_index"] or x["target"] != y["target"]:
            raise ValueError(f"line {k + 1}: {names[0]} has user {x['user_index']} (target {x['target']}), "
                             f"{names[1]} has user {y['user_index']} (target {y['target']}); evaluate both on the "
                             "same dataset, split and users")


def fuse_predictions(text: list[dict[str, Any]], image: list[dict[str, Any]], config: FusionConfig,
                     ks: Sequence[int] = DEFAULT_KS) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Metrics of text-only, image-only and fused rankings (every rule; ``config.rule`` first)."""
    _check_same_users(text, image, ("text", "image"))
    targets = [r["target"] for r in text]
    rows: dict[str, dict[str, float]] = {
        "text": metrics_from_ranks(ranks_from_lists([r["items"] for r in text], targets), ks),
        "image": metrics_from_ranks(ranks_from_lists([r["items"] for r in image], targets), ks),
    }
    chosen: list[dict[str, Any]] = []
    for rule in (config.rule,) + tuple(r for r in RULES if r != config.rule):
        cfg = FusionConfig(rule=rule, weights=config.weights, rrf_k=config.rrf_k, bonus=config.bonus, topk=config.topk)
        fused = [fuse_lists([(t["items"], t["scores"]), (i["items"], i["scores"])], cfg) for t, i in zip(text, image)]
        ranks = ranks_from_lists([f[0] for f in fused], targets)
        rows[f"fused-{rule}"] = metrics_from_ranks(ranks, ks)
        if rule == config.rule:
            chosen = [{"user": t.get("user"), "user_index": t["user_index"], "target": t["target"], "rank": int(r),
                       "items": items, "scores": [round(s, 6) for s in scores]}
                      for t, (items, scores), r in zip(text, fused, ranks)]
    return rows, chosen


def rule_for_run(run_dir: str | Path) -> str:
    """``rawprob`` for a run whose scores are item log-probabilities (constrained objective), else ``prob``."""
    import json

    cfg = Path(run_dir) / "config.json"
    objective = json.loads(cfg.read_text(encoding="utf-8")).get("objective", "full") if cfg.is_file() else "full"
    return "rawprob" if objective == "constrained" else "prob"


@dataclass
class FuseArgs:
    """The flags of ``python -m genrec.fusion``: which evaluation to fuse, and how."""

    ckpt: str = flag("", "run folder whose eval/ holds the text predictions (and image ones)", required=True)
    image_ckpt: str | None = flag(None, "run folder of the image predictions (unset: the --ckpt folder)")
    dataset: str = flag("Synthetic", "dataset name")
    split: str = flag("test", "evaluated split", choices=("test", "valid"))
    text_task: str = flag("seqrec", "evaluated task giving the text ranking")
    image_task: str = flag("seqimage", "evaluated task giving the image ranking")
    rule: str = flag("auto", "auto: rawprob for constrained-objective runs (true item probabilities), else prob",
                     choices=("auto",) + RULES)
    weights: str = flag("1,1", "weights of the text and image lists, e.g. 1,0.5")
    rrf_k: float = flag(FusionConfig.rrf_k, "k of the rrf rule")
    bonus: float = flag(FusionConfig.bonus, "bonus of the published rule")
    topk: int = flag(FusionConfig.topk, "length of the fused list")
    # which evaluation to fuse: the same flags genrec.evaluate named its result files by
    max_users: int = flag(0, "fuse the evaluation of this user subset (0 = all users)")
    seed: int = flag(0, "seed of that --max-users subset")
    checkpoint: str = flag("best", "fuse the evaluation of this checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genrec.fusion", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(p, FuseArgs)
    return p


def main(argv: list[str] | None = None) -> int:
    from genrec.evaluate import read_predictions, result_stem, write_predictions

    args = FuseArgs(**given_flags(build_parser().parse_args(argv), FuseArgs))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        try:
            weights = tuple(float(w) for w in args.weights.split(","))
        except ValueError:
            raise ValueError(f"--weights must be two comma-separated numbers, got {args.weights!r}") from None
        rule = rule_for_run(args.ckpt) if args.rule == "auto" else args.rule
        cfg = FusionConfig(rule=rule, weights=weights, rrf_k=args.rrf_k, bonus=args.bonus, topk=args.topk)
        cfg.check()
        text_dir = Path(args.ckpt) / "eval"
        image_dir = Path(args.image_ckpt or args.ckpt) / "eval"
        which = dict(max_users=args.max_users, seed=args.seed, checkpoint=args.checkpoint)
        text_path = text_dir / f"{result_stem(args.dataset, args.text_task, args.split, **which)}.predictions.jsonl"
        image_path = image_dir / f"{result_stem(args.dataset, args.image_task, args.split, **which)}.predictions.jsonl"
        text, image = read_predictions(text_path), read_predictions(image_path)
        rows, fused = fuse_predictions(text, image, cfg)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"genrec.fusion: error: {e}", file=sys.stderr)
        return 2
    stem = result_stem(args.dataset, "fused", args.split, **which)
    record = {"dataset": args.dataset, "split": args.split, "users": len(text), "rule": cfg.rule,
              "weights": list(cfg.weights), "rrf_k": cfg.rrf_k, "bonus": cfg.bonus, "topk": cfg.topk,
              "text_predictions": str(text_path), "image_predictions": str(image_path),
              "metrics": rows[f"fused-{cfg.rule}"], "compare": rows}
    write_predictions(text_dir / f"{stem}.predictions.jsonl", fused)
    atomic_write_json(text_dir / f"{stem}.metrics.json", record, indent=2)
    print(format_table({f"{args.text_task} (text)": rows["text"], f"{args.image_task} (image)": rows["image"],
                        **{k + (" *" if k == f"fused-{cfg.rule}" else ""): v for k, v in rows.items()
                           if k.startswith("fused-")}}, ks=DEFAULT_KS))
    print(f"* selected rule; wrote {text_dir / (stem + '.metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
