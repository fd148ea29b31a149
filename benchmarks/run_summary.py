"""One summary row per finetuned run folder: training progress and test scores, for the GPU scripts.

    python benchmarks/run_summary.py OUT.json DATASET RUN_DIR [RUN_DIR ...]

Reads ``metrics.jsonl`` (steps, epochs, stop reason, the validation NDCG@10 curve), ``config.json``
(recipe, model, budget, teacher) and ``eval/<dataset>-{seqrec,seqimage,fused}-test*.metrics.json``;
writes the rows as a JSON list and prints a table. Missing pieces (a run stopped by a deadline) are
left out of its row, never guessed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CONFIG_KEYS = ("recipe", "preset", "objective", "item_inputs", "batch_size", "time_budget_minutes", "distill_from",
               "distill_temperature", "distill_alpha")


def summarize(run_dir: Path, dataset: str) -> dict[str, Any]:
    row: dict[str, Any] = {"run": run_dir.name}
    config = run_dir / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        row["config"] = {k: cfg.get(k) for k in CONFIG_KEYS}
    metrics = run_dir / "metrics.jsonl"
    for line in metrics.read_text(encoding="utf-8").splitlines() if metrics.is_file() else []:
        rec = json.loads(line)
        if rec.get("type") == "end":
            row.update({k: rec.get(k) for k in ("step", "stop_reason", "train_seconds")})
        elif rec.get("type") == "eval":
            row["epoch"] = rec.get("epoch")
            if rec.get("valid_NDCG@10") is not None:
                row.setdefault("valid_curve", []).append([rec.get("step"), rec["valid_NDCG@10"]])
    if row.get("valid_curve"):
        row["best_valid_NDCG@10"] = max(v for _, v in row["valid_curve"])
    for kind in ("seqrec", "seqimage", "fused"):
        found = sorted((run_dir / "eval").glob(f"{dataset}-{kind}-test*.metrics.json"))
        if found:
            m = json.loads(found[0].read_text(encoding="utf-8"))
            row[kind] = {k: m["metrics"].get(k) for k in ("HR@10", "NDCG@10", "HR@5", "NDCG@5")}
            if "users_per_second" in m:
                row[kind]["users_per_second"] = m["users_per_second"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], kind: str, metric: str = "NDCG@10") -> str:
        v = (row.get(kind) or {}).get(metric)
        return f"{v:.4f}" if isinstance(v, (int, float)) else "-"

    lines = ["| run | steps | epochs | text N@10 | image N@10 | fused N@10 | fused H@10 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r.get('step', '-')} | {r.get('epoch', '-')} | {cell(r, 'seqrec')} | "
                     f"{cell(r, 'seqimage')} | {cell(r, 'fused')} | {cell(r, 'fused', 'HR@10')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: run_summary.py OUT.json DATASET RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    out, dataset, runs = Path(args[0]), args[1], [Path(a) for a in args[2:]]
    rows = [summarize(r, dataset) for r in runs]
    out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
