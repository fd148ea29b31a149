"""Multi-task T5 pretraining on several datasets that share code tokens.

    accelerate launch genrec/pretrain.py --datasets Scientific,Office,Beauty --tasks seqrec,seqimage
    python -m genrec.pretrain --quick            # one CPU, the synthetic default dataset

Datasets without image codes train the text tasks only (logged). Defaults follow MQL4GRec:
lr 1e-3, weight decay 0.01, 30 epochs, effective batch 8192, one-epoch warmup then constant,
best checkpoint by validation loss.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # run as a file (python genrec/pretrain.py, accelerate launch): import the package, not siblings
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from genrec.training import cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli_main("pretrain", argv)


if __name__ == "__main__":
    sys.exit(main())
