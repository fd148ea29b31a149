"""``mmgenrec <stage> ...``: one console script for every stage of the pipeline.

Each stage is the ``main(argv)`` of the module its ``python -m`` command runs, imported only when
that stage is asked for, so ``mmgenrec --help`` is instant and ``mmgenrec index ...`` never imports
the generator. The ``python -m ...`` and ``accelerate launch genrec/pretrain.py`` commands keep working.
"""

from __future__ import annotations

import importlib
import sys

# stage -> (module with main(argv), one line for the help)
STAGES: dict[str, tuple[str, str]] = {
    "data": ("genrec.data.__main__", "prepare, link, stats, synthetic, titles: dataset folders"),
    "embed": ("index.embed", "item text / image embeddings (.npy, row i = item i)"),
    "index": ("index.train", "train a semantic-ID quantizer (RQ-VAE / RQ-KMeans)"),
    "codes": ("index.generate_codes", "export unique semantic IDs from a trained quantizer"),
    "pretrain": ("genrec.pretrain", "pretrain the T5 generator on several datasets"),
    "finetune": ("genrec.finetune", "finetune the generator on a target dataset"),
    "evaluate": ("genrec.evaluate", "HR@K / NDCG@K of a run with full ranking"),
    "fuse": ("genrec.fusion", "late fusion of text and image predictions"),
    "recommend": ("genrec.recommend", "top-K items for a history"),
    "baselines": ("genrec.baselines.cli", "popularity, SASRec, TiSASRec, ... (train / evaluate)"),
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: mmgenrec <stage> [args...]   (mmgenrec <stage> --help for a stage's options)", "", "stages:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"mmgenrec: error: unknown stage {stage!r}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    sys.argv = [f"mmgenrec {stage}", *rest]  # so a stage's own usage line names the command typed
    try:
        return int(module.main(rest) or 0)
    except SystemExit as e:  # argparse --help / errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
