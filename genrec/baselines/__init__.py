"""Classic sequential-recommendation baselines trained and evaluated exactly like genrec.

Popularity, SASRec and time-aware TiSASRec (BCE with sampled negatives or full-softmax CE), MmTransformer4Rec (text/image
embeddings in, item table out) and a GPT-style ID transformer, sharing one data path
(``genrec.data`` leave-one-out), one training loop (``trainer.Trainer``, Accelerate, checkpoints,
resume) and the full-ranking metrics of ``genrec.metrics`` (or, with ``--eval-negatives N``, the
sampled protocol of ``sampled_eval``, labelled as such). ``registry.MODELS`` maps a model name
to ``run(dataset, budget_minutes, args) -> dict`` for ``benchmarks/results.py``.
"""

from genrec.baselines.base import SeqRecModel, causal_padding_mask, count_parameters
from genrec.baselines.data import NegativeSampler, SequenceData
from genrec.baselines.features import NotApplicable
from genrec.baselines.id_gpt import IdGPT, IdGPTConfig
from genrec.baselines.mm_transformer import MmTransformer4Rec, MmTransformerConfig
from genrec.baselines.popularity import Popularity
from genrec.baselines.sampled_eval import EvalNegatives, protocol_name
from genrec.baselines.sasrec import SASRec, SASRecConfig
from genrec.baselines.tisasrec import TiSASRec, TiSASRecConfig
from genrec.baselines.trainer import Trainer, TrainConfig, TrainResult, evaluate

__all__ = [
    "EvalNegatives", "IdGPT", "IdGPTConfig", "MmTransformer4Rec", "MmTransformerConfig", "NegativeSampler",
    "NotApplicable",
    "Popularity", "SASRec", "SASRecConfig", "SeqRecModel", "SequenceData", "TiSASRec", "TiSASRecConfig", "TrainConfig", "TrainResult", "Trainer",
    "causal_padding_mask", "count_parameters", "evaluate", "protocol_name",
]
