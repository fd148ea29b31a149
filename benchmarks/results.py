"""Results benchmark: train and evaluate every registered model on every dataset under a time budget.

    python benchmarks/results.py --datasets Instruments Scientific Office Beauty \\
        --models popularity sasrec sasrec-bce mmtransformer gpt gpt-textinit --budget-minutes 6 --threads 1

Each (model, dataset) gets ``--budget-minutes`` of training (validation runs included; the model
is selected on validation NDCG@10) and is then scored on the test split: full ranking over all
items, leave-one-out, nothing excluded but padding. Writes ``benchmarks/results/results.json`` and
``results.md`` (atomically, after every run, so a long run can be watched) with HR@1/5/10,
NDCG@5/10, training time, parameters, published numbers (Instruments, Beauty, Sports, Toys), and the exact
command. ``--eval-negatives N`` switches the baselines to the sampled protocol (target among N sampled
negatives); such rows are stored and shown as ``<model> (sampled-N)`` next to, never in place of, the
full-ranking rows, and every run records its ``protocol``. ``--merge`` adds to / replaces entries of an
existing results.json instead of starting over.
Models come from ``genrec.baselines.registry.MODELS`` (``@register`` adds more).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, str(REPO))

from genrec.baselines.cli import add_train_flags, open_dataset
from genrec.baselines.features import NotApplicable
from genrec.baselines.registry import METRIC_KEYS, MODELS, check_overrides
import benchmarks.genrec_entry  # noqa: E402,F401  (registers the genrec entry)
from genrec.baselines.settings import eval_protocol
from genrec.data import DataError
from genrec.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger("benchmarks.results")

DEFAULT_DATASETS = ["Instruments", "Scientific", "Office", "Beauty"]
DEFAULT_MODELS = ["popularity", "sasrec", "sasrec-bce", "mmtransformer", "gpt", "gpt-textinit"]

# Published full-ranking leave-one-out results (sources: ../shared/data/README.md and
# ../shared/reference/mql4grec-method.md section 6). Beauty "Recall" = HR with one target per user.
PUBLISHED: dict[str, list[tuple[str, dict[str, float]]]] = {
    "Instruments": [
        ("SASRec (MQL4GRec paper)", {"HR@1": .0318, "HR@5": .0946, "HR@10": .1233, "NDCG@5": .0654, "NDCG@10": .0746}),
        ("TIGER (MQL4GRec paper)", {"HR@1": .0754, "HR@5": .1007, "HR@10": .1221, "NDCG@5": .0882, "NDCG@10": .0950}),
        ("MQL4GRec w/o pretraining (5-seed re-run)",
         {"HR@1": .0763, "HR@5": .1058, "HR@10": .1291, "NDCG@5": .0902, "NDCG@10": .0997}),
        ("MQL4GRec with pretraining (paper)", {"HR@10": .1375, "NDCG@10": .1060}),
    ],
    "Beauty": [
        ("SASRec (TIGER paper)", {"HR@10": .0605, "NDCG@10": .0318}),
        ("SASRec BCE, tuned (independent reproduction)", {"HR@5": .0508, "NDCG@5": .0348, "HR@10": .0740, "NDCG@10": .0423}),
        ("TIGER (TIGER paper)", {"HR@5": .0454, "NDCG@5": .0321, "HR@10": .0648, "NDCG@10": .0384}),
    ],
    # TIGER (Rajput et al., NeurIPS 2023), main results table: Recall@K on the P5 leave-one-out splits = HR@K
    "Sports": [
        ("TIGER (TIGER paper)", {"HR@5": .0264, "NDCG@5": .0181, "HR@10": .0400, "NDCG@10": .0225}),
    ],
    "Toys": [
        ("TIGER (TIGER paper)", {"HR@5": .0521, "NDCG@5": .0371, "HR@10": .0712, "NDCG@10": .0432}),
    ],
}
# Other spellings of the same Amazon categories (file prefixes, P5 folder names) -> PUBLISHED keys.
PUBLISHED_ALIASES = {"sports_and_outdoors": "Sports", "sports": "Sports", "toys_and_games": "Toys", "toys": "Toys",
                     "beauty": "Beauty", "musical_instruments": "Instruments", "instruments": "Instruments"}


def published_for(dataset: str) -> list[tuple[str, dict[str, float]]]:
    """Published rows for ``dataset`` under its own name or a common spelling of its category."""
    if dataset in PUBLISHED:
        return PUBLISHED[dataset]
    key = PUBLISHED_ALIASES.get(dataset.lower().replace(" ", "_").replace("-", "_"))
    return PUBLISHED.get(key, []) if key else []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help=f"registered: {', '.join(MODELS)}")
    p.add_argument("--budget-minutes", type=float, default=6.0, help="training budget per model per dataset")
    p.add_argument("--data-root", default="data", help="<root>/<ds>/, falling back to ../shared/data/<ds>")
    p.add_argument("--out", default="benchmarks/results", help="folder for results.json and results.md")
    p.add_argument("--checkpoint-dir", default="",
                   help="keep every run under DIR: baselines in <dir>/<ds>/<model> (resumable), the generator in "
                        "<dir>/<ds>/genrec-<codes> (genrec-default for the dataset's own codes). Default: baselines "
                        "keep nothing on disk, the generator's runs go to log/results-runs/<date>-<time>-<pid>/")
    p.add_argument("--merge", action="store_true", help="update an existing results.json instead of replacing it")
    p.add_argument("--suffix", default="", help="appended to each row name, e.g. ' (20 min)' to keep both rows")
    p.add_argument("--from-convergence", default="", metavar="JSON",
                   help="instead of training, add the genrec points of a benchmarks/convergence.py file at "
                        "--budget-minutes (CPU-minutes there) as rows (with --merge: next to the existing ones)")
    add_train_flags(p)
    return p.parse_args(argv)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)


def _ratio(run: dict[str, Any], pop: dict[str, Any] | None, key: str = "NDCG@10") -> str:
    if not pop or key not in run or not pop.get(key):
        return "-"
    return f"{run[key] / pop[key]:.2f}x"


def run_key(name: str, protocol: str, suffix: str = "") -> str:
    """The row name: sampled runs carry their protocol, so they never replace a full-ranking row."""
    return name + ("" if protocol == "full" else f" ({protocol})") + suffix


def _protocol(run: dict[str, Any]) -> str:
    return run.get("protocol", "full")  # runs written before the protocol was recorded were all full ranking


def render_markdown(results: dict[str, Any]) -> str:
    sampled = sorted({_protocol(run) for runs in results["runs"].values() for run in runs.values()} - {"full"})
    scope = "full ranking" + (f"; rows marked {', '.join(sampled)}: sampled" if sampled else "")
    lines = [f"# Results: baselines and the generative recommender ({scope}, leave-one-out)", ""]
    lines.append("Produced by:")
    lines.append("")
    for cmd in results["commands"]:
        lines.append(f"    {cmd}")
    env = results["environment"]
    lines += [
        "",
        f"Machine: {env['machine']}; torch {env['torch']}; {env['threads']} thread(s); device {env['device']}. "
        f"Budget: {results['budget_minutes']} min of training (incl. validation) per model per dataset unless the "
        "row says otherwise; "
        "CPU shared with other jobs, so times are indicative only.",
        "",
        "Protocol: leave-one-out (test = last item, validation = second to last), histories = last 50 items; "
        "sequence models train seq-to-seq on everything before the validation item; model selection on "
        "validation NDCG@10; scores over all items (nothing excluded, pessimistic ties). "
        "'vs pop' = test NDCG@10 / popularity's test NDCG@10 in the same run. "
        "Published rows are quoted, not re-run.",
        "",
    ]
    if sampled:
        lines += [
            "Rows marked (sampled-N) use the sampled protocol instead: the target is ranked among N items drawn "
            "uniformly (fixed seed per user, the same for every model) from those the user never interacted with, "
            "validation and model selection included. They are not comparable with the full-ranking rows or the "
            "published rows above: sampled metrics overstate quality and can reorder models (Krichene & Rendle, "
            "KDD 2020). Their 'vs pop' is against popularity under the same protocol.",
            "",
        ]
    if any(name.startswith("genrec") for runs in results["runs"].values() for name in runs):
        lines += [
            "genrec rows: the multi-task T5 trained from scratch (no pretraining) under the same budget, histories = "
            "last 20 items (MQL4GRec's setting), trie-constrained beam search with 20 beams; the row reports text+image "
            "late fusion when the dataset has image codes, else text; a suffix names the code file it was trained on. "
            "Rows that compare code files train the same fixed number of epochs (stop 'epochs', budget column = the "
            "time cap), so every code file gets the same optimizer steps whatever the machine's load. "
            "Per-modality metrics are in results.json (by_modality).",
            "",
        ]
    cols = METRIC_KEYS
    for ds, runs in results["runs"].items():
        info = results.get("datasets", {}).get(ds, {})
        lines.append(f"## {ds}" + (f" ({info['users']:,} users, {info['items']:,} items)" if info else ""))
        lines.append("")
        lines.append("| model | " + " | ".join(cols) + " | vs pop | budget min | train s | params | epochs (best) | stop |")
        lines.append("|---|" + "---|" * (len(cols) + 6))
        pops = {p: runs.get(run_key("popularity", p)) for p in {_protocol(r) for r in runs.values()}}
        for name, run in runs.items():
            protocol = _protocol(run)
            if protocol != "full" and f"({protocol})" not in name:  # a row renamed by hand still shows its protocol
                name = run_key(name, protocol)
            if "status" in run:
                lines.append(f"| {name} | {run['status']}: {run['reason']} |" + " |" * (len(cols) + 5))
                continue
            pop = pops.get(protocol)
            pop = pop if pop and "status" not in pop and _protocol(pop) == protocol else None
            cells = [_fmt(run.get(c)) for c in cols]
            epochs = f"{run['epochs']} ({run['best_epoch']})" if "epochs" in run else "-"
            budget = run.get("train_config", {}).get("budget_minutes", "-")
            params = f"{run['params']:,}" if run.get("params") is not None else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ratio(run, pop)} | {budget} | {run['train_seconds']:.0f} | "
                         f"{params} | {epochs} | {run.get('stop_reason', '-')} |")
        for label, pub in published_for(ds):
            cells = [_fmt(pub.get(c)) for c in cols]
            lines.append(f"| *published: {label}* | " + " | ".join(cells) + " | | | | | | |")
        lines.append("")
    return "\n".join(lines) + "\n"


def import_convergence(results: dict[str, Any], path: Path, budget: float, datasets: list[str], command: str,
                       suffix: str = "") -> int:
    """Rows from the genrec points of a convergence file at one budget (their own runs, test split, same protocol)."""
    conv = json.loads(path.read_text(encoding="utf-8"))
    n = 0
    for p in conv.get("points", []):
        if p["dataset"] not in datasets or p["budget_minutes"] != budget or not p["model"].startswith("genrec"):
            continue
        metrics = p.get("by_modality", {}).get(p.get("reported", "text"))
        if not metrics:
            continue
        row = {k: v for k, v in metrics.items() if k in METRIC_KEYS}
        row.update(train_seconds=p.get("train_cpu_seconds", 0.0), params=p.get("params"), epochs="-",
                   best_epoch=round(p.get("best_epoch") or 0, 2), stop_reason=p.get("stop_reason"), reported=p.get("reported"),
                   train_config={"budget_minutes": f"{budget:g} CPU"}, command=command, source=str(path),
                   config=p.get("config"))
        results["runs"].setdefault(p["dataset"], {})[f"{p['model']} (convergence run, {budget:g} CPU-min){suffix}"] = row
        n += 1
    if not n:
        print(f"error: {path}: no genrec points at {budget:g} minutes for {', '.join(datasets)}", file=sys.stderr)
    return n


def write_outputs(results: dict[str, Any], out: Path) -> None:
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "results.md", render_markdown(results))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    command = "python benchmarks/results.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    try:
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown models {unknown}; registered: {sorted(MODELS)}")
        check_overrides(args.set, args.models)
        protocols = {name: eval_protocol(name, args) for name in args.models}
        if args.budget_minutes <= 0:
            raise ValueError("--budget-minutes must be positive")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    results: dict[str, Any] = {"commands": [], "runs": {}, "datasets": {}}
    if args.merge and (out / "results.json").is_file():
        results = json.loads((out / "results.json").read_text())
    if command not in results["commands"]:
        results["commands"].append(command)
    header = {
        "budget_minutes": args.budget_minutes,
        "environment": {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() and not getattr(args, "cpu", False) else "cpu",
        },
    }
    results["published"] = {ds: dict(rows) for ds, rows in PUBLISHED.items()}
    if args.from_convergence:
        # an import trains nothing here: the file keeps its own budget and machine line, and each imported
        # row states its budget in its budget column
        for key, value in header.items():
            results.setdefault(key, value)
        added = import_convergence(results, Path(args.from_convergence), args.budget_minutes, args.datasets, command,
                                   args.suffix)
        write_outputs(results, out)
        print(render_markdown(results))
        return 0 if added else 2
    results.update(header)
    failures = 0
    for ds in args.datasets:
        try:
            dataset = open_dataset(args.data_root, ds)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failures += 1
            continue
        results["datasets"][ds] = {"users": dataset.num_users, "items": dataset.num_items, "dir": str(dataset.dir),
                                   "embeddings": dataset.available_embeddings()}
        runs = results["runs"].setdefault(ds, {})
        for name in args.models:
            logger.info("=== %s on %s (budget %.1f min, %s)", name, ds, args.budget_minutes, protocols[name])
            start = time.perf_counter()
            try:
                run = MODELS[name](dataset, args.budget_minutes, args)
            except NotApplicable as e:
                run = {"status": "n/a", "reason": e.problem}
            except (DataError, ValueError) as e:
                run = {"status": "error", "reason": str(e)}
                failures += 1
            run.setdefault("protocol", protocols[name])
            if run["protocol"] != protocols[name]:
                raise RuntimeError(f"{name} evaluated with {run['protocol']}, asked for {protocols[name]}")
            run["wall_seconds"] = round(time.perf_counter() - start, 1)
            run["command"] = command
            run["date"] = dt.datetime.now().isoformat(timespec="seconds")
            runs[run_key(name, protocols[name], args.suffix)] = run
            write_outputs(results, out)
            if "status" in run:
                logger.warning("%s on %s: %s (%s)", name, ds, run["status"], run["reason"])
            else:
                logger.info("%s on %s: test HR@10 %.4f NDCG@10 %.4f in %.0fs", name, ds, run["HR@10"], run["NDCG@10"],
                            run["train_seconds"])
    write_outputs(results, out)
    print(render_markdown(results))
    kept = [(ds, name, run["run_dir"]) for ds, runs in results["runs"].items() for name, run in runs.items()
            if "run_dir" in run and run.get("command") == command]
    for ds, name, run_dir in kept:  # stdout, after the table: what to hand to genrec.recommend
        print(f"{name} on {ds}: run kept in {run_dir}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
