"""Learning curves: test NDCG@10 against training CPU-minutes, SASRec against a ladder of genrec variants.

Each (dataset, model) is ONE run that is trained up to the first budget, scored on the test split
with its best-so-far checkpoint (validation-selected, as every row of the results benchmark), then
resumed up to the next budget, and so on: the 8- and 30-minute points come from the same run.
Budgets are CPU time of the training process (validation included), so other jobs on the machine
do not shrink them; use the same ``--threads`` for every run (default 1).

Resumable: every finished point is written to the JSON at once (atomically), runs live under
``--runs`` and resume from their last checkpoint; re-running the same command skips finished
points and continues unfinished runs.

    python benchmarks/convergence.py --datasets Office Scientific --budgets 8 30 \\
        --models sasrec genrec-published genrec+constrained genrec+constrained+pooled \\
        --data-root ../shared/data --text-codes Scientific=../shared/data/Scientific/indexes/rqvae_native/Scientific.index.json

Writes ``benchmarks/results/convergence.json`` (``points``: ``{dataset, model, budget_minutes,
test_NDCG@10, ...}``), ``convergence.md`` and ``convergence.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from genrec.utils.io import (  # noqa: E402
    atomic_output, atomic_write_json, atomic_write_text, output_stem, stem_file)

logger = logging.getLogger("convergence")

# The ladder: each rung adds one lever to the previous one (GenRecEntryConfig fields).
_PUBLISHED = {"objective": "full", "item_inputs": "tokens", "prefix_training": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "genrec-published": _PUBLISHED,  # the results benchmark's genrec before this work: full softmax, token inputs
    "genrec+constrained": {**_PUBLISHED, "objective": "constrained"},
    "genrec+constrained+pooled": {**_PUBLISHED, "objective": "constrained", "item_inputs": "pooled"},
    # all targets of a user window in one causal pass (drops the cross-modal tasks it cannot serve)
    # more regularisation: the pooled rung's training loss fell well below its validation loss on Office
    "genrec+constrained+pooled+dropout0.3": {"objective": "constrained", "item_inputs": "pooled", "dropout": 0.3},
    # no dropout: Instruments, Scientific and Beauty were still improving at 30 minutes (underfitting
    # under the budget), where regularisation only slows the fit (and masks cost time)
    "genrec+constrained+pooled+dropout0": {"objective": "constrained", "item_inputs": "pooled", "dropout": 0.0},
    # no dropout for the first 5 CPU-minutes, then 0.1: +dropout0 peaked at epoch 9 on Scientific
    # (about 5 minutes) and then overfit, while dropout 0.1 was still improving at 30
    "genrec+constrained+pooled+dropout-late5": {"objective": "constrained", "item_inputs": "pooled",
                                                "dropout_free_minutes": 5.0},
    # code-token embeddings start from the quantizer's codewords (needs --codebooks DATASET=RUN)
    "genrec+constrained+pooled+seminit": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": False,
                                          "seminit": True},
    # the paper's model size (d_model 128, 4+4 layers) on the pooled rung: the small model early-stops on Office
    "genrec+constrained+pooled+paper": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": False,
                                        "preset": "paper"},
    # cosine decay over 25 epochs instead of a constant rate: the pooled rung peaked at epoch 12 on
    # Office and early-stopped at 22, inside the 30-minute budget
    "genrec+constrained+pooled+cosine25": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": False,
                                           "scheduler": "cosine", "epochs": 25},
    # cosine decay laid over the run's last budget (CPU clock), whatever number of epochs it holds:
    # the 30-minute point ends at the lowest rate; the 8-minute point of the same run is still near the peak
    "genrec+constrained+pooled+anneal": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": False,
                                         "scheduler": "cosine", "anneal": "budget"},
    # twice the peak learning rate under the same budget-long decay: the small model's valid loss was
    # still falling at the end of every 30-minute run, so the step size may be what limits it
    "genrec+constrained+pooled+anneal+lr4e-3": {"objective": "constrained", "item_inputs": "pooled",
                                                "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                                "lr": 4e-3},
    # the paper's model size under the budget-long decay: the small model's validation NDCG@10 on
    # Office still rose at the end of its 30 minutes, so capacity may limit it more than steps do
    "genrec+constrained+pooled+anneal+paper": {"objective": "constrained", "item_inputs": "pooled",
                                               "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                               "preset": "paper"},
    # the budget-clock decay with code tokens started from the quantizer's codewords (needs --codebooks)
    "genrec+constrained+pooled+anneal+seminit": {"objective": "constrained", "item_inputs": "pooled",
                                                 "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                                 "seminit": True},
    # a smaller student (tiny preset) alone, and distilled from a teacher run (needs --teacher DATASET=RUN,
    # same code vocabulary): how much quality the small model keeps, and what the teacher adds
    "genrec+constrained+pooled+anneal+tiny": {"objective": "constrained", "item_inputs": "pooled",
                                              "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                              "preset": "tiny"},
    "genrec+constrained+pooled+anneal+tiny+distill": {"objective": "constrained", "item_inputs": "pooled",
                                                      "prefix_training": False, "scheduler": "cosine",
                                                      "anneal": "budget", "preset": "tiny", "distill": True},
    # keep the checkpoint of the lowest validation loss instead of the highest NDCG@10 on 1000 users: under
    # the constrained objective that loss is the negative log-probability of the true item over all items,
    # measured on every validation user, so its noise is far below the sampled NDCG@10's (about +-.005 at .05)
    "genrec+constrained+pooled+selectloss": {"objective": "constrained", "item_inputs": "pooled",
                                             "select_metric": "valid_loss"},
    "genrec+constrained+pooled+anneal+selectloss": {"objective": "constrained", "item_inputs": "pooled",
                                                    "prefix_training": False, "scheduler": "cosine",
                                                    "anneal": "budget", "select_metric": "valid_loss"},
    # evaluate (and keep as best) an exponential moving average of the weights, horizon about 1000 steps
    # (3-8 epochs here): the constant rate's validation NDCG@10 jumps by +-15% from epoch to epoch, and
    # an average of nearby weights is the budget-free way to the lower-noise point a decay reaches only at its end
    "genrec+constrained+pooled+ema": {"objective": "constrained", "item_inputs": "pooled", "ema_decay": 0.999},
    "genrec+constrained+pooled+dropout0+ema": {"objective": "constrained", "item_inputs": "pooled", "dropout": 0.0,
                                               "ema_decay": 0.999},
    # the average over Office's best rung (budget-long decay): its scores still jump between the last epochs
    "genrec+constrained+pooled+anneal+ema": {"objective": "constrained", "item_inputs": "pooled",
                                             "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                             "ema_decay": 0.999},
    # semantic IDs from a trained SASRec's item table instead of the item text (needs --text-codes
    # DATASET=<codes>, made by `python -m genrec.baselines embeddings` then index.train / generate_codes):
    # the code tree then follows the collaborative similarity a next-item softmax learns
    "genrec+constrained+pooled+anneal+cfcodes": {"objective": "constrained", "item_inputs": "pooled",
                                                 "prefix_training": False, "scheduler": "cosine", "anneal": "budget",
                                                 "cfcodes": True},
    # the same codes under the constant rate, the schedule that did best at 30 minutes on Scientific
    # (made by benchmarks/cfcodes.sh)
    "genrec+constrained+pooled+cfcodes": {"objective": "constrained", "item_inputs": "pooled", "cfcodes": True},
    # two views of every item: the dataset's text codes plus a SASRec item table's codes in the image
    # slot (needs --image-codes DATASET=<codes>, made by MODALITY=image benchmarks/cfcodes.sh), so the
    # cross-view tasks train and late fusion scores; for datasets that have no image codes of their own
    "genrec+constrained+pooled+cfview": {"objective": "constrained", "item_inputs": "pooled", "cfview": True},
    # length-grouped batches (Hugging Face's group_by_length): most histories are far shorter than the
    # 20 kept, and a random batch of 256 is padded to its longest; on Scientific 100 steps cost 18.4
    # instead of 28.3 CPU-seconds (1.54x the steps per CPU-minute), at the price of batches that hold
    # similar lengths instead of a uniform draw
    "genrec+constrained+pooled+grouped": {"objective": "constrained", "item_inputs": "pooled", "group_by_length": True},
    # a learned input embedding per item on top of its pooled code embeddings (SASRec's whole input):
    # items that share code prefixes get near-identical pooled inputs, and on Scientific every
    # schedule, seed and code file tried plateaued at .052-.056 against SASRec's .062 at 30 minutes
    "genrec+constrained+pooled+itememb": {"objective": "constrained", "item_inputs": "pooled", "item_embeddings": True},
    # the same with half the training history items shown without their own vector: +itememb's
    # validation loss rose after epoch 16 on Scientific while the plain rung's kept falling
    "genrec+constrained+pooled+itememb+itemdrop0.5": {"objective": "constrained", "item_inputs": "pooled",
                                                      "item_embeddings": True, "item_dropout": 0.5},
    # warmup-stable-decay: the constant rate of +grouped (the schedule that did best on Scientific), then a
    # linear decay over the last fifth of the run's last budget, and no early stop (the decay's end is the
    # point of it). The 8-minute point of a 8+30 run is still at the constant rate. On Scientific the constant
    # rate's validation NDCG@10 jumps by +-.004 between epochs near its end; a decay is the usual cure
    "genrec+constrained+pooled+grouped+wsd": {"objective": "constrained", "item_inputs": "pooled",
                                              "group_by_length": True, "scheduler": "linear", "anneal": "budget",
                                              "decay_share": 0.2, "patience": 0},
    # the `budget` recipe (genrec/configs/budget.toml): +grouped+wsd without validation, plus history dropout .2
    "genrec+budget": {"recipe": "budget"},
    # finetune from a cross-domain pretraining run (needs --pretrained DATASET=RUN; same codes as that run)
    "genrec+constrained+pooled+pretrain": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": False,
                                           "pretrain": True},
    # batch in windows: 32 windows hold about as many targets as 256 samples (256 windows: 8x fewer
    # updates per epoch, which learned far slower per CPU-minute on Office)
    "genrec+constrained+pooled+prefix": {"objective": "constrained", "item_inputs": "pooled", "prefix_training": True,
                                         "batch_size": 32},
}
RESULTS = REPO / "benchmarks" / "results"


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SystemExit(f"convergence: error: {path}: invalid JSON ({e}); move it away to start afresh") from None
    return {"points": []}


def _has(results: dict[str, Any], dataset: str, model: str, budget: float) -> bool:
    return any(p["dataset"] == dataset and p["model"] == model and p["budget_minutes"] == budget
               for p in results["points"])


def _sasrec_point(dataset, budget: float, args: argparse.Namespace) -> dict[str, Any]:
    from genrec.baselines.registry import run_sequence_model

    ns = argparse.Namespace(set=args.set, checkpoint_dir=str(Path(args.runs)), budget_clock="cpu",
                            epochs=args.epochs or None)
    out = run_sequence_model("sasrec", dataset, budget, ns)
    return {"test_NDCG@10": out["NDCG@10"], "test_HR@10": out["HR@10"], "valid_NDCG@10": out["valid"]["NDCG@10"],
            "epochs": out["epochs"], "best_epoch": out["best_epoch"], "stop_reason": out["stop_reason"],
            "steps": out["steps"], "train_wall_seconds": out["train_seconds"]}


def variant_config(dataset, model: str, args: argparse.Namespace, codes: dict[str, str]):
    """The results entry's config of one ladder rung on one dataset (``--set`` overrides applied)."""
    from benchmarks.genrec_entry import GenRecEntryConfig
    from genrec.baselines.settings import apply_overrides

    lever = dict(VARIANTS[model])
    image_codes = getattr(args, "image_code_files", {})
    if lever.pop("seminit", False):
        if dataset.name not in args.codebook_runs:
            raise SystemExit(f"convergence: error: {model} needs --codebooks {dataset.name}=<quantizer run>")
        lever["text_codebooks"] = args.codebook_runs[dataset.name]
    if lever.pop("distill", False):
        if dataset.name not in args.teacher_runs:
            raise SystemExit(f"convergence: error: {model} needs --teacher {dataset.name}=<generator run>")
        lever["distill_from"] = args.teacher_runs[dataset.name]
    if lever.pop("cfcodes", False) and dataset.name not in codes:
        raise SystemExit(f"convergence: error: {model} needs --text-codes {dataset.name}=<codes of a baseline's "
                         "item table>")
    if lever.pop("cfview", False) and dataset.name not in image_codes:
        raise SystemExit(f"convergence: error: {model} needs --image-codes {dataset.name}=<codes of a baseline's "
                         "item table, exported as image codes>")
    if lever.pop("pretrain", False):
        if dataset.name not in args.pretrained_runs:
            raise SystemExit(f"convergence: error: {model} needs --pretrained {dataset.name}=<pretraining run>")
        lever["init"] = args.pretrained_runs[dataset.name]
    cfg = dataclasses.replace(GenRecEntryConfig(), **lever)
    cfg = apply_overrides(cfg, "genrec", args.set, strict=True)
    if dataset.name in codes:
        cfg = dataclasses.replace(cfg, text_codes=codes[dataset.name])
    if dataset.name in image_codes:
        cfg = dataclasses.replace(cfg, image_codes=image_codes[dataset.name])
    return cfg


def _genrec_point(dataset, model: str, budget: float, args: argparse.Namespace, codes: dict[str, str]) -> dict[str, Any]:
    from benchmarks.genrec_entry import evaluate_genrec_run, genrec_train_config
    from genrec.model import load_model
    from genrec.training import TrainConfig, train

    cfg = variant_config(dataset, model, args, codes)
    run_dir = Path(args.runs) / dataset.name / model
    last = run_dir / "last" / "train_config.json"
    if last.is_file():  # continue the same run up to the new budget
        saved = TrainConfig.from_json(json.loads(last.read_text(encoding="utf-8")))
        tcfg = dataclasses.replace(saved, time_budget_minutes=budget)
        summary = train(tcfg, resume=True)
    else:
        tcfg = genrec_train_config(dataset, cfg, budget, out_dir=run_dir.parent, run=model, epochs=args.epochs or 200,
                                   threads=args.threads, budget_clock="cpu", anneal_minutes=max(args.budgets))
        summary = train(tcfg)
    if summary["stop_reason"] in ("signal", "stop_after_steps"):
        # interrupted before the budget: no point; the next invocation resumes the run
        raise KeyboardInterrupt(f"{run_dir} stopped by {summary['stop_reason']} at step {summary['step']}")
    ev = evaluate_genrec_run(run_dir, dataset, cfg, args.threads)
    best = json.loads((run_dir / "best" / "trainer_state.json").read_text(encoding="utf-8"))
    return {"test_NDCG@10": ev["metrics"]["NDCG@10"], "test_HR@10": ev["metrics"]["HR@10"],
            "valid_NDCG@10": best.get("value"), "best_epoch": best.get("epoch"), "steps": summary["step"],
            "stop_reason": summary["stop_reason"], "train_cpu_seconds": round(summary["train_cpu_seconds"], 1),
            "train_wall_seconds": round(summary["train_seconds"], 1), "reported": ev["reported"],
            "by_modality": ev["by_modality"], "config": dataclasses.asdict(cfg),
            "params": sum(p.numel() for p in load_model(run_dir / "best").parameters())}


def _dataset_paths(flag: str, items: list[str]) -> dict[str, str]:
    """``{dataset: path}`` from ``DATASET=PATH`` arguments whose paths exist."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).exists():
            raise ValueError(f"{flag} {item!r}: expected DATASET=PATH of an existing file or folder")
        out[name] = path
    return out


def _append_point(stem: Path, point: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """Add a point under a file lock, re-reading the file first: two runs of this script may share it."""
    import fcntl

    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem_file(stem, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = _load(stem_file(stem, ".json"))
        for c in mine.get("commands", []):
            if c not in results.setdefault("commands", []):
                results["commands"].append(c)
        results["machine"] = mine.get("machine", results.get("machine", ""))
        results["points"].append(point)
        write_outputs(results, stem)
    return results


def _cap_note(point: dict[str, Any]) -> str:
    """Flags a point whose run an epoch or step cap ended before its budget: it measures fewer
    CPU-minutes than its column says, and a budget-long decay ended at the cap, not the budget."""
    used = point.get("train_cpu_seconds")
    if point.get("stop_reason") not in ("epochs", "max_steps") or used is None:
        return ""
    if used >= 0.98 * 60 * point["budget_minutes"]:
        return ""
    return f" ({point['stop_reason']} cap at {used / 60:.1f} min)"


def write_outputs(results: dict[str, Any], stem: Path) -> None:
    atomic_write_json(stem_file(stem, ".json"), results, indent=1)
    points = results["points"]
    lines = ["# Convergence: test NDCG@10 against training CPU-minutes (full ranking, leave-one-out)", "",
             "Produced by:", ""] + [f"    {c}" for c in results.get("commands", [])] + [
             "", f"Machine: {results.get('machine', '')}. Each (dataset, model) is one run resumed from budget to "
             "budget; scores use its validation-selected checkpoint. 'vs sasrec' = genrec / SASRec at the same budget.", ""]
    for ds in dict.fromkeys(p["dataset"] for p in points):
        budgets = sorted({p["budget_minutes"] for p in points if p["dataset"] == ds})
        models = list(dict.fromkeys(p["model"] for p in points if p["dataset"] == ds))
        table = {(p["model"], p["budget_minutes"]): p for p in points if p["dataset"] == ds}
        lines += [f"## {ds}", "", "| model | " + " | ".join(f"{b:g} min" for b in budgets) + " | stop (last) |",
                  "|---|" + "---|" * (len(budgets) + 1)]
        for m in models:
            cells = []
            for b in budgets:
                p = table.get((m, b))
                if p is None:
                    cells.append("-")
                    continue
                s = table.get(("sasrec", b))
                ratio = f" ({p['test_NDCG@10'] / s['test_NDCG@10']:.2f}x)" if s and m != "sasrec" and s["test_NDCG@10"] else ""
                cells.append(f"{p['test_NDCG@10']:.4f}{ratio}{_cap_note(p)}")
            last = table.get((m, max(b for (mm, b) in table if mm == m)))
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {last.get('stop_reason', '')} |")
        lines.append("")
    atomic_write_text(stem_file(stem, ".md"), "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    datasets = list(dict.fromkeys(p["dataset"] for p in points))
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for m in dict.fromkeys(p["model"] for p in points if p["dataset"] == ds):
            xy = sorted((p["budget_minutes"], p["test_NDCG@10"]) for p in points if p["dataset"] == ds and p["model"] == m)
            ax.plot(*zip(*xy), marker="o", label=m, linestyle="--" if m == "sasrec" else "-")
        ax.set_title(ds)
        ax.set_xlabel("training CPU-minutes")
        ax.set_ylabel("test NDCG@10")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(stem_file(stem, ".png"), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convergence", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--models", nargs="+", default=["sasrec", *VARIANTS],
                   help=f"sasrec and genrec variants: {', '.join(VARIANTS)}")
    p.add_argument("--budgets", nargs="+", type=float, default=[8.0, 30.0], help="training CPU-minutes, ascending")
    p.add_argument("--data-root", default="data")
    p.add_argument("--text-codes", nargs="*", default=[], metavar="DATASET=FILE", help="text code file per dataset")
    p.add_argument("--image-codes", nargs="*", default=[], metavar="DATASET=FILE", help="image code file per dataset")
    p.add_argument("--codebooks", nargs="*", default=[], metavar="DATASET=RUN",
                   help="quantizer run that produced a dataset's text codes (for the seminit rung)")
    p.add_argument("--pretrained", nargs="*", default=[], metavar="DATASET=RUN",
                   help="pretraining run (other datasets, same code vocabulary) to finetune from (for the pretrain rung)")
    p.add_argument("--teacher", nargs="*", default=[], metavar="DATASET=RUN",
                   help="generator run to distil from (same code vocabulary; for the +distill rung)")
    p.add_argument("--runs", default="log/convergence", help="run folders: <runs>/<dataset>/<model>")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=0, help="epoch cap of every run (0 = the models' defaults)")
    p.add_argument("--set", action="append", default=[], help="FIELD=VALUE or genrec.FIELD=VALUE overrides")
    p.add_argument("--out", default=str(RESULTS / "convergence"), help="output stem (.json, .md, .png)")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args, argv)
    except KeyboardInterrupt as e:
        logger.warning("interrupted (%s); run the same command again to continue", e)
        return 130


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "accelerate", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's per-shard bar, once per checkpoint
    import torch

    from genrec.data import load_dataset
    from genrec.data.errors import DataError

    torch.set_num_threads(args.threads)
    unknown = [m for m in args.models if m != "sasrec" and m not in VARIANTS]
    if unknown:
        print(f"convergence: error: unknown model(s) {unknown}; choose from sasrec, {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    if any(b <= 0 for b in args.budgets) or args.budgets != sorted(args.budgets):
        print("convergence: error: --budgets must be positive and ascending", file=sys.stderr)
        return 2
    try:
        codes = _dataset_paths("--text-codes", args.text_codes)
        args.codebook_runs = _dataset_paths("--codebooks", args.codebooks)
        args.pretrained_runs = _dataset_paths("--pretrained", args.pretrained)
        args.teacher_runs = _dataset_paths("--teacher", args.teacher)
        args.image_code_files = _dataset_paths("--image-codes", args.image_codes)
    except ValueError as e:
        print(f"convergence: error: {e}", file=sys.stderr)
        return 2
    stem = output_stem(args.out)
    results = _load(stem_file(stem, ".json"))
    command = "python benchmarks/convergence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results.setdefault("commands", [])
    if command not in results["commands"]:
        results["commands"].append(command)
    results["machine"] = (f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); budgets in CPU "
                          "minutes of the training process, validation included")
    for ds_name in args.datasets:
        try:
            dataset = load_dataset(args.data_root, ds_name, text_codes=codes.get(ds_name),
                                   image_codes=args.image_code_files.get(ds_name))
        except (DataError, FileNotFoundError, ValueError) as e:
            print(f"convergence: error: {e}", file=sys.stderr)
            return 2
        for model in args.models:
            for budget in args.budgets:
                if _has(results, ds_name, model, budget):
                    continue
                t0 = time.perf_counter()
                logger.info("%s / %s: training to %g CPU-minutes", ds_name, model, budget)
                point = (_sasrec_point(dataset, budget, args) if model == "sasrec"
                         else _genrec_point(dataset, model, budget, args, codes))
                point = {"dataset": ds_name, "model": model, "budget_minutes": budget, **point,
                         "wall_seconds_with_eval": round(time.perf_counter() - t0, 1),
                         "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
                results = _append_point(stem, point, results)
                logger.info("%s / %s @ %g min: test NDCG@10 %.4f", ds_name, model, budget, point["test_NDCG@10"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
