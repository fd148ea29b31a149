"""Item metadata from P5/IDGenRec-style files: ``item_generative_indexing_phase_0.txt`` -> ``<ds>.item.json``.

    python -m genrec.data titles --data-root data --dataset Beauty

Beauty (TIGER/P5 split) ships no ``item.json``, only ``user_sequence.txt`` (user ASIN, then item
ASINs; item id j = the j-th distinct item ASIN in order of appearance) and
``item_generative_indexing_phase_0.txt`` (``ASIN name words...`` per line, a short name derived
from the title). This writes ``{item_id: {"title": name, "asin": ASIN}}`` for every item, so text
embeddings (``python -m index.embed text``) and titles in ``genrec.recommend`` work on it. Every
item must be listed; an ASIN named twice with different names is an error naming the file and
line; an empty name is kept as an empty title, with a warning.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.data.errors import DataError
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags

logger = logging.getLogger(__name__)

NAMES_FILE = "item_generative_indexing_phase_0.txt"


def read_names(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    blank: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            asin, name = parts[0], parts[1].strip() if len(parts) > 1 else ""
            if not name:
                blank.append(asin)
            if names.get(asin, name) != name:
                raise DataError(path, f"line {lineno}: ASIN {asin} already named {names[asin]!r}")
            names[asin] = name
    if blank:  # kept with an empty title (the embedder warns again); not dropped, so ids stay aligned
        logger.warning("%s: %d item(s) have an empty name: %s", path, len(blank), ", ".join(blank[:5]))
    return names


def titles_from_p5(dir: Path, name: str) -> dict[int, dict[str, Any]]:
    """``{item_id: {"title", "asin"}}`` for every item of ``dir``'s ``user_sequence.txt``."""
    from genrec.data.dataset import _item_map_from_user_sequence

    seq_path, names_path = dir / "user_sequence.txt", dir / NAMES_FILE
    for p in (seq_path, names_path):
        if not p.is_file():
            raise DataError(p, "file not found (the titles command needs user_sequence.txt and " + NAMES_FILE + ")")
    item2id = _item_map_from_user_sequence(seq_path)
    names = read_names(names_path)
    missing = [a for a in item2id if a not in names]
    if missing:
        raise DataError(names_path, f"{len(missing)} of {len(item2id)} items of user_sequence.txt have no name "
                                    f"(first: {missing[:3]})")
    return {i: {"title": names[a], "asin": a} for a, i in sorted(item2id.items(), key=lambda kv: kv[1])}


def write_titles(data_root: str | Path, name: str, overwrite: bool = False) -> Path:
    from genrec.data.dataset import load_dataset
    from genrec.utils.io import atomic_write_json

    dir = Path(data_root) / name
    out = dir / f"{name}.item.json"
    if out.exists() and not overwrite:
        raise DataError(out, "already exists (pass --overwrite to replace it)")
    meta = titles_from_p5(dir, name)
    if not ((dir / f"{name}.inter.json").is_file() or (dir / f"{name}.test.inter").is_file()):
        raise DataError(dir, f"no interactions: expected {name}.inter.json or {name}.train/valid/test.inter. "
                             f"Make them first: `python -m genrec.data prepare --reviews <reviews dump> --dataset "
                             f"{name} --out {data_root}` from raw Amazon reviews, `python -m genrec.data prepare "
                             f"--p5 {dir} --dataset {name} --out {data_root}` from these P5 files (it writes item.json "
                             f"from the names too), or `python -m genrec.data link "
                             f"--from <folder holding {name}/> --dataset {name} --out {data_root}` for a prepared "
                             f"dataset folder; then run titles again")
    ds = load_dataset(data_root, name)  # the interactions must agree with the item count
    if ds.num_items > len(meta):
        raise DataError(dir / "user_sequence.txt", f"names {len(meta)} items but the interactions use {ds.num_items}")
    atomic_write_json(out, {str(i): m for i, m in meta.items()}, indent=None)
    return out


@dataclass
class TitlesArgs:
    """The flags of ``python -m genrec.data titles``."""

    data_root: str = flag("data", "folder holding <dataset>/")
    dataset: str = flag("", "dataset name", required=True)
    overwrite: bool = flag(False, "replace an existing <ds>.item.json")


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "titles", help="write <ds>.item.json from P5-style user_sequence.txt + " + NAMES_FILE,
        description="Write <root>/<ds>/<ds>.item.json (item titles) from P5-style files. Must exist first in "
                    "<root>/<ds>/: user_sequence.txt, " + NAMES_FILE + ", and the interactions "
                    "(<ds>.inter.json or <ds>.train/valid/test.inter, made by `python -m genrec.data prepare` "
                    "(--reviews, or --p5 for these very files) or linked with `python -m genrec.data link`).")
    add_dataclass_flags(p, TitlesArgs)

    def run(ns: argparse.Namespace) -> int:
        args = TitlesArgs(**given_flags(ns, TitlesArgs))
        out = write_titles(args.data_root, args.dataset, args.overwrite)
        print(out)
        return 0

    p.set_defaults(func=run)
