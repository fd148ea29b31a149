"""A small, locally built tokenizer over semantic-ID code tokens and task tokens.

The vocabulary is fixed by (codes per level, levels, dedup tokens, tasks), built in one
deterministic order, so a code token has the same id in pretraining and finetuning. It is a
``tokenizers`` WordLevel model wrapped in ``PreTrainedTokenizerFast`` and round-trips through
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` with no hub access.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
# Every task and direction gets its own learned token (the published code reused arbitrary words).
TASK_TOKENS = (
    "seqrec", "seqimage", "item2image", "image2item", "seqitem2image", "seqimage2item",
    "fusionseqrec", "fgfusion_text2image", "fgfusion_image2text",
)


def task_token(name: str) -> str:
    return f"<task_{name}>"


@dataclass(frozen=True)
class VocabConfig:
    codes_per_level: int = 256
    text_levels: str = "abcd"
    image_levels: str = "ABCD"
    # Fifth-level tokens <e_k>/<E_k> reserved for dedup, so datasets with duplicate codes need no
    # vocabulary change between pretraining and finetuning.
    dedup_tokens: int = 64
    tasks: tuple[str, ...] = field(default=TASK_TOKENS)

    def tokens(self) -> list[str]:
        vocab = [PAD, EOS, UNK] + [task_token(t) for t in self.tasks]
        for letter in self.text_levels + self.image_levels:
            vocab += [f"<{letter}_{i}>" for i in range(self.codes_per_level)]
        if self.dedup_tokens:
            for letter in (chr(ord(self.text_levels[-1]) + 1), chr(ord(self.image_levels[-1]) + 1)):
                vocab += [f"<{letter}_{i}>" for i in range(self.dedup_tokens)]
        return vocab


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
    fast.init_kwargs["vocab_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    return fast


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
                             "(more codes per level or dedup tokens than the vocabulary was built for?)")
    return torch.tensor(rows, dtype=torch.long)


_CODE_RE = re.compile(r"<[a-hA-H]_\d+>")


def parse_generated(text: str) -> tuple[str, ...]:
    """Code tokens in a decoded string (``decode`` puts spaces between tokens)."""
    return tuple(_CODE_RE.findall(text))
