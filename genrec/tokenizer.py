"""A small, locally built tokenizer over semantic-ID code tokens and task tokens.

The vocabulary is fixed by a code spec (levels, codes per level, dedup tokens) and a fixed number
of task slots, built in one deterministic order, so a code token has the same id in pretraining
and finetuning, and adding a task to the registry moves no id. It is a
``tokenizers`` WordLevel model wrapped in ``PreTrainedTokenizerFast`` and round-trips through
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` with no hub access.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from genrec.data.codes import CodeSpec
from genrec.tasks import TASK_TOKENS as _REGISTRY_TASK_TOKENS
from genrec.tasks import task_token  # noqa: F401  (re-exported: the tokenizer's users build task tokens)

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
# Task tokens take ids 3 .. 3 + TASK_SLOTS - 1 in registry order (genrec.tasks); the slots no task
# uses yet are reserved tokens, so adding a task moves no code token's id.
TASK_SLOTS = 32
RESERVED_TASK = "<task_reserved_{}>"
# every task token's name, registry order: task_token(TASK_TOKENS[i]) has id 3 + i
TASK_TOKENS = tuple(t[len("<task_"):-1] for t in _REGISTRY_TASK_TOKENS)


@dataclass(frozen=True)
class VocabConfig:
    """The vocabulary: the special tokens, the task slots and every code token of a CodeSpec."""

    codes_per_level: int = 256
    # Dedup-level tokens <e_k>/<E_k> (after 4 levels) are always in the vocabulary, so datasets
    # with duplicate codes need no vocabulary change between pretraining and finetuning.
    dedup_tokens: int = 64
    levels: int = 4

    @property
    def spec(self) -> CodeSpec:
        return CodeSpec(levels=self.levels, codes_per_level=self.codes_per_level, dedup_tokens=self.dedup_tokens)

    def tokens(self) -> list[str]:
        if len(_REGISTRY_TASK_TOKENS) > TASK_SLOTS:
            raise ValueError(f"{len(_REGISTRY_TASK_TOKENS)} task tokens do not fit {TASK_SLOTS} task slots")
        tasks = list(_REGISTRY_TASK_TOKENS) + [RESERVED_TASK.format(k)
                                               for k in range(len(_REGISTRY_TASK_TOKENS), TASK_SLOTS)]
        return [PAD, EOS, UNK] + tasks + self.spec.tokens("text") + self.spec.tokens("image")


def build_tokenizer(config: VocabConfig | None = None) -> PreTrainedTokenizerFast:
    config = config or VocabConfig()
    vocab = {tok: i for i, tok in enumerate(config.tokens())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Angle-bracket tokens are split out whole whether or not spaces separate them.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), "removed"),
        pre_tokenizers.Split(Regex(r"<[^<>\s]+>|[^<\s]+"), "isolated"),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, vocab[EOS])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    fast.init_kwargs["vocab_config"] = asdict(config)
    fast.init_kwargs["code_spec"] = config.spec.to_json()
    return fast


def tokenizer_code_spec(tokenizer: PreTrainedTokenizerFast) -> CodeSpec:
    """The code spec a tokenizer was built for (tokenizers saved before the spec existed: 4 levels)."""
    saved = tokenizer.init_kwargs.get("code_spec")
    if saved is not None:
        return CodeSpec.from_json(dict(saved), "tokenizer_config.json")
    old = tokenizer.init_kwargs.get("vocab_config") or {}
    return CodeSpec(levels=len(old.get("text_levels", "abcd")), codes_per_level=int(old.get("codes_per_level", 256)),
                    dedup_tokens=int(old.get("dedup_tokens", 64)))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(str(path))


def code_token_ids(tokenizer: PreTrainedTokenizerFast, codes: Sequence[Sequence[str]]) -> torch.Tensor:
    """``[num_items, levels]`` token ids of every item's code; raises if a token is not in the vocabulary."""
    unk = tokenizer.unk_token_id
    rows = [tokenizer.convert_tokens_to_ids(list(c)) for c in codes]
    for item, row in enumerate(rows):
        if unk in row:
            bad = [t for t, i in zip(codes[item], row) if i == unk]
            raise ValueError(f"item {item}: code tokens {bad} are not in the tokenizer's vocabulary "
                             "(more codes per level, dedup tokens or levels than the vocabulary was built for? A code "
                             "file with more than 4 levels needs its .spec.json beside it, as index.generate_codes writes)")
    return torch.tensor(rows, dtype=torch.long)
