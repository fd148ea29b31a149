"""Multi-task T5 finetuning on a target dataset, optionally from a pretrained run.

    accelerate launch genrec/finetune.py --dataset Instruments \
        --tasks seqrec,seqimage,item2image,image2item,fusionseqrec --init log/<pretrain run>
    python -m genrec.finetune --quick            # one CPU, the synthetic default dataset

``--init`` loads the pretrained model and checks that its tokenizer equals the one this run
builds. Defaults follow MQL4GRec: lr 5e-4, up to 200 epochs, cosine schedule, warmup ratio
0.01, weight decay 0.01, early stopping with patience 10; the best checkpoint is selected on
validation NDCG@10 (validation loss when the evaluator is unavailable).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from genrec.training import cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli_main("finetune", argv)


if __name__ == "__main__":
    sys.exit(main())
