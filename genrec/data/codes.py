"""Semantic-ID code files: ``{item_id: ["<a_12>", "<b_7>", ...]}``.

Text codes use lower-case level letters (``<a_i><b_j><c_k><d_l>``), image codes upper-case
(``<A_i>...<D_l>``). A fifth "dedup" level (``<e_k>`` / ``<E_k>``) makes duplicate codes unique.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from genrec.data.errors import DataError
from genrec.data.jsonio import read_json

logger = logging.getLogger(__name__)

CODE_TOKEN = re.compile(r"^<([a-hA-H])_(\d+)>$")
TEXT_LEVELS = "abcdefgh"
IMAGE_LEVELS = "ABCDEFGH"
MAX_LEVELS = len(TEXT_LEVELS) - 1  # one letter stays free for the dedup level
# file name stems of the code files (and their reports) that index.generate_codes writes per modality
CODE_FILE = {"text": "index_lemb", "image": "index_vitemb"}
REPORT_FILE = {"text": "lemb-report", "image": "vitemb-report"}

Codes = list[tuple[str, ...]]


@dataclass(frozen=True)
class CodeSpec:
    """The grammar of semantic-ID codes, the one definition the quantizer, the data layer, the
    tokenizer and the decoder read: ``levels`` letters per modality (``a..`` text, ``A..`` image),
    ``codes_per_level`` indices per level, and an optional dedup level (the next letter) with
    ``dedup_tokens`` indices."""

    levels: int = 4
    codes_per_level: int = 256
    dedup_tokens: int = 64

    def __post_init__(self) -> None:
        for name in ("levels", "codes_per_level", "dedup_tokens"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"code spec: {name} must be an integer, got {getattr(self, name)!r}")
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"code spec: levels must be between 1 and {MAX_LEVELS}, got {self.levels}")
        if self.codes_per_level < 1 or self.dedup_tokens < 0:
            raise ValueError(f"code spec: codes_per_level must be >= 1 and dedup_tokens >= 0, got "
                             f"{self.codes_per_level} and {self.dedup_tokens}")

    def letters(self, modality: str) -> str:
        """The level letters of ``modality``'s codes, dedup level excluded."""
        return modality_levels(modality)[:self.levels]

    def dedup_letter(self, modality: str) -> str:
        return modality_levels(modality)[self.levels]

    def tokens(self, modality: str) -> list[str]:
        """Every code token of ``modality`` in vocabulary order: levels, then the dedup level."""
        out = [f"<{letter}_{i}>" for letter in self.letters(modality) for i in range(self.codes_per_level)]
        return out + [f"<{self.dedup_letter(modality)}_{i}>" for i in range(self.dedup_tokens)]

    def check(self, codes: Codes, modality: str, where: str | Path) -> None:
        """Raise DataError unless every code is ``levels`` tokens (or ``levels + 1`` ending in a
        dedup token) of ``modality`` whose indices fit the spec."""
        letters, dedup = self.letters(modality), self.dedup_letter(modality)
        for item, code in enumerate(codes):
            got = "".join(CODE_TOKEN.match(t).group(1) for t in code)
            if got not in (letters, letters + dedup) or (got == letters + dedup and not self.dedup_tokens):
                raise DataError(where, f"item {item}: code levels {got} do not fit the code spec ({self.levels} "
                                       f"levels {letters}{f', dedup level {dedup}' if self.dedup_tokens else ''})")
            for level, tok in enumerate(code):
                index, top = int(CODE_TOKEN.match(tok).group(2)), (
                    self.codes_per_level if level < self.levels else self.dedup_tokens)
                if index >= top:
                    raise DataError(where, f"item {item}: code token {tok} is out of the code spec's range "
                                           f"(0..{top - 1} at level {level + 1})")

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any, where: str | Path) -> "CodeSpec":
        if not isinstance(obj, dict) or set(obj) - {"levels", "codes_per_level", "dedup_tokens"}:
            raise DataError(where, f"expected a code spec {{levels, codes_per_level, dedup_tokens}}, got {obj!r}")
        try:
            return cls(**obj)
        except ValueError as e:
            raise DataError(where, str(e)) from None


def spec_path(code_path: str | Path) -> Path:
    """``X.index_lemb.json`` -> ``X.index_lemb.spec.json``: the code spec saved beside a code file."""
    p = Path(code_path)
    return p.with_name((p.name[:-5] if p.name.endswith(".json") else p.name) + ".spec.json")


def load_code_spec(code_path: str | Path) -> CodeSpec | None:
    """The spec saved beside ``code_path``, or None for a code file written without one."""
    p = spec_path(code_path)
    return CodeSpec.from_json(read_json(p), p) if p.is_file() else None


def modality_levels(modality: str) -> str:
    if modality == "text":
        return TEXT_LEVELS
    if modality == "image":
        return IMAGE_LEVELS
    raise ValueError(f"unknown modality {modality!r}; expected 'text' or 'image'")


def format_code(indices: Sequence[int], modality: str) -> tuple[str, ...]:
    letters = modality_levels(modality)
    return tuple(f"<{letters[level]}_{int(i)}>" for level, i in enumerate(indices))


def parse_code(code: Sequence[str]) -> tuple[int, ...]:
    """``("<a_3>", "<b_9>")`` -> ``(3, 9)``; raises ValueError on a malformed token."""
    out = []
    for tok in code:
        m = CODE_TOKEN.match(tok)
        if not m:
            raise ValueError(f"malformed code token {tok!r}")
        out.append(int(m.group(2)))
    return tuple(out)


def load_codes(path: str | Path, num_items: int | None = None, modality: str | None = None) -> Codes:
    """Read a code file into a list indexed by item id, validating every entry.

    Every item id in ``0..num_items-1`` must have a code; all codes must have the same length and
    use the level letters in order (``a, b, c, ...`` for text, ``A, B, C, ...`` for image; with
    ``modality`` given, the letters must be that modality's).
    """
    path = Path(path)
    raw = read_json(path)
    if isinstance(raw, list):
        raw = {str(i): c for i, c in enumerate(raw)}
    if not isinstance(raw, dict) or not raw:
        raise DataError(path, "expected a non-empty JSON object {item_id: [code tokens]}")
    by_id: dict[int, tuple[str, ...]] = {}
    for key, code in raw.items():
        try:
            item = int(key)
        except (TypeError, ValueError):
            raise DataError(path, f"item id {key!r} is not an integer") from None
        if item < 0:
            raise DataError(path, f"item id {item} is negative")
        if isinstance(code, str):
            code = re.findall(r"<[^>]*>", code)
        if not isinstance(code, list) or not code or not all(isinstance(t, str) for t in code):
            raise DataError(path, f"item {item}: code must be a list of token strings, got {code!r}")
        for tok in code:
            if not CODE_TOKEN.match(tok):
                raise DataError(path, f"item {item}: malformed code token {tok!r}")
        by_id[item] = tuple(code)
    # len(by_id), not max id + 1: a stray huge id must not make the check below walk range(max id)
    n = len(by_id) if num_items is None else num_items
    out_of_range = sorted(i for i in by_id if i >= n)
    if out_of_range:
        raise DataError(path, f"{len(out_of_range)} item ids out of range 0..{n - 1} (first: {out_of_range[:5]})")
    missing = [i for i in range(n) if i not in by_id]
    if missing:
        raise DataError(path, f"{len(missing)} of {n} items have no code (first: {missing[:5]})")
    codes = [by_id[i] for i in range(n)]
    length = len(codes[0])
    letters = [CODE_TOKEN.match(t).group(1) for t in codes[0]]
    _check_level_letters(path, "".join(letters), modality)
    for i, code in enumerate(codes):
        if len(code) != length:
            raise DataError(path, f"item {i}: code has {len(code)} tokens, item 0 has {length}")
        got = [CODE_TOKEN.match(t).group(1) for t in code]
        if got != letters:
            raise DataError(path, f"item {i}: level letters {''.join(got)} differ from item 0's {''.join(letters)}")
    spec = load_code_spec(path)
    if spec is not None:
        spec.check(codes, modality or ("image" if letters[0].isupper() else "text"), path)
    return codes


def _check_level_letters(path: Path, letters: str, modality: str | None) -> None:
    # The tokenizer keys tokens by letter: image letters in a text file, or levels out of order,
    # would train a model on tokens that mean something else.
    expected = {"text": TEXT_LEVELS, "image": IMAGE_LEVELS}
    kind = modality or ("image" if letters[:1].isupper() else "text")
    want = modality_levels(kind)[:len(letters)]
    if letters != want:
        if modality and letters == expected["image" if modality == "text" else "text"][:len(letters)]:
            raise DataError(path, f"{modality} codes are written with {'image' if modality == 'text' else 'text'} "
                                  f"level letters ({letters}); {modality} codes use {want}")
        raise DataError(path, f"item 0: level letters {letters} are not the levels in order (expected {want})")


def duplicate_groups(codes: Codes) -> list[list[int]]:
    """Groups (by first item id) of items that share a full code; singletons excluded."""
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for item, code in enumerate(codes):
        groups[code].append(item)
    return [g for g in groups.values() if len(g) > 1]


def count_duplicates(codes: Codes) -> int:
    """Number of items whose code is shared with at least one other item."""
    return sum(len(g) for g in duplicate_groups(codes))


def make_codes_unique(codes: Codes) -> tuple[Codes, int]:
    """Append a dedup token so every item's code is unique (TIGER's policy).

    Items are visited in id order, so the result is deterministic: the k-th item with a given code
    gets ``<e_k>`` (``<E_k>`` for image codes). Every item gets the extra token so all codes keep
    one length, which the constrained decoder relies on. Returns the new codes and the number of
    items that shared a code. Codes that are already unique are returned unchanged.
    """
    n_dup = count_duplicates(codes)
    if n_dup == 0:
        return list(codes), 0
    first_letter = CODE_TOKEN.match(codes[0][0]).group(1)
    letters = TEXT_LEVELS if first_letter.islower() else IMAGE_LEVELS
    if len(codes[0]) >= len(letters):
        raise ValueError(f"codes already have {len(codes[0])} levels; no level letter is left for a dedup token")
    level_letter = letters[len(codes[0])]
    seen: dict[tuple[str, ...], int] = defaultdict(int)
    out = []
    for code in codes:
        k = seen[code]
        seen[code] += 1
        out.append(code + (f"<{level_letter}_{k}>",))
    return out, n_dup


def codes_to_json(codes: Codes) -> dict[str, list[str]]:
    return {str(i): list(c) for i, c in enumerate(codes)}
