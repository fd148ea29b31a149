"""Prefix-unique code tokens: one token per node of the code tree from a chosen level on.

In a semantic-ID code ``<a_i><b_j>...`` the level-2 token ``<b_j>`` is shared by every level-1
cluster: its embedding (tied to the output layer) is RQ-VAE's residual direction j, the same under
every ``<a_i>``. The generator then tells two items of one cluster apart only through the decoder's
context, and a target seen a few times in training is mostly lost at that level
(``benchmarks/code_level_hits.py``). Renumbering each level from ``from_level`` on by its prefix
node, ``<b_{node of (i, j)}>``, gives every node of the tree its own embedding: the generator's
input and output then hold a vector per item, as SASRec's item table does, while the tree (and so
the trie, the constrained objective and the beam search) stays the same shape.

    python -m genrec.data node-codes --codes Scientific.index.json --out Scientific.node2.index.json

The spec written beside the new file widens ``codes_per_level`` to the largest level's node count,
so the vocabulary holds every node token.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from genrec.data.codes import CODE_TOKEN, CodeSpec, Codes, load_code_spec, load_codes, spec_path
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags
from genrec.utils.io import atomic_outputs

logger = logging.getLogger(__name__)


def node_codes(codes: Codes, from_level: int, spec: CodeSpec | None = None) -> tuple[Codes, CodeSpec]:
    """``codes`` with the token of every level ``>= from_level`` (1-based) renumbered by its prefix
    node, and the spec that fits them.

    Nodes of a level are numbered in sorted order of their prefixes, so the result depends only on
    the codes. A dedup level (``spec.levels + 1``-th token) is kept as it is: it already tells apart
    the items of one leaf. Items keep their tree: two items share a prefix of length L after the
    renumbering exactly when they shared it before."""
    spec = spec or CodeSpec()
    if not codes:
        raise ValueError("node codes: no codes")
    if not 1 <= from_level <= spec.levels:
        raise ValueError(f"node codes: from_level must be between 1 and {spec.levels}, got {from_level}")
    letters = [CODE_TOKEN.match(t).group(1) for t in codes[0][:spec.levels]]
    width = spec.codes_per_level
    numbers: list[dict[tuple[str, ...], int]] = []
    for level in range(from_level - 1, spec.levels):
        prefixes = sorted({code[:level + 1] for code in codes}, key=lambda p: tuple(_index(t) for t in p))
        numbers.append({p: k for k, p in enumerate(prefixes)})
        width = max(width, len(prefixes))
    out = []
    for code in codes:
        new = list(code)
        for k, level in enumerate(range(from_level - 1, spec.levels)):
            new[level] = f"<{letters[level]}_{numbers[k][code[:level + 1]]}>"
        out.append(tuple(new))
    return out, CodeSpec(levels=spec.levels, codes_per_level=width, dedup_tokens=spec.dedup_tokens)


def _index(token: str) -> int:
    return int(CODE_TOKEN.match(token).group(2))


def write_node_codes(src: str | Path, dst: str | Path, from_level: int) -> CodeSpec:
    """Read the code file ``src`` (and its spec, if saved beside it), write the node codes and their
    spec to ``dst`` (atomically, both or neither)."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"node codes: --out {dst} is the input file; write the node codes beside it")
    codes = load_codes(src)
    spec = load_code_spec(src) or _spec_of(codes)
    new, new_spec = node_codes(codes, from_level, spec)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs([dst, spec_path(dst)]) as (code_tmp, spec_tmp):
        code_tmp.write_text(json.dumps({str(i): list(c) for i, c in enumerate(new)}), encoding="utf-8")
        spec_tmp.write_text(json.dumps(new_spec.to_json(), indent=2), encoding="utf-8")
    logger.info("%s: %d items, levels %d.. renumbered by node (%d tokens a level), wrote %s and %s",
                src, len(new), from_level, new_spec.codes_per_level, dst, spec_path(dst).name)
    return new_spec


def _spec_of(codes: Codes) -> CodeSpec:
    """The spec of a code file saved without one: 4 levels of 256 unless its codes say more."""
    default = CodeSpec()
    levels = default.levels if len(codes[0]) in (default.levels, default.levels + 1) else len(codes[0])
    top = max(_index(t) for code in codes for t in code[:levels]) + 1
    dedup = max((_index(code[levels]) + 1 for code in codes if len(code) > levels), default=default.dedup_tokens)
    return CodeSpec(levels=levels, codes_per_level=max(default.codes_per_level, top),
                    dedup_tokens=max(default.dedup_tokens, dedup))


@dataclass
class NodeCodesArgs:
    """The flags of ``python -m genrec.data node-codes``."""

    codes: str = flag("", "input code file {item_id: [code tokens]}", required=True)
    out: str = flag("", "output code file (its spec is written beside it)", required=True)
    from_level: int = flag(2, "first level (1-based) whose tokens are renumbered by their prefix node")


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node-codes", help="renumber a code file's tokens by code-tree node from a level on "
                                          "(one embedding per node instead of per level index)",
                       description=__doc__.split("\n\n")[0])
    add_dataclass_flags(p, NodeCodesArgs)

    def run(ns: argparse.Namespace) -> int:
        args = NodeCodesArgs(**given_flags(ns, NodeCodesArgs))
        write_node_codes(args.codes, args.out, args.from_level)
        print(args.out)
        return 0

    p.set_defaults(func=run)
