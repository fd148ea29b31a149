"""P5 / IDGenRec layout -> a dataset folder.

Input folder: ``user_sequence.txt`` (one line per user: ``user item item ...``, whitespace
separated, items oldest first) and optionally ``item_generative_indexing_phase_0.txt``
(``ASIN name words...``). Output, under ``<out>/<dataset>/``: ``<ds>.inter.json``,
``<ds>.item2id``, ``<ds>.user2id`` and, when the names file is present, ``<ds>.item.json``
(``{item_id: {"title": name, "asin": ASIN}}``).

Ordering rule: users get indices 0, 1, ... in file order; item index = order of first appearance,
scanning users in file order and each user's items left to right. This is the numbering the TIGER
/ P5 Beauty split uses, so ``Beauty.inter.json`` is rebuilt exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from genrec.data.dataset import MIN_INTERACTIONS
from genrec.data.derived import guard_dataset_dir
from genrec.data.errors import DataError
from genrec.data.p5_titles import NAMES_FILE, read_names
from genrec.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

SEQUENCE_FILE = "user_sequence.txt"


def read_user_sequences(path: Path) -> tuple[list[str], list[str], list[list[int]]]:
    """``(users, items, sequences)`` of a ``user_sequence.txt`` under the ordering rule."""
    if not path.is_file():
        raise DataError(path, "file not found (the P5 layout needs " + SEQUENCE_FILE + ")")
    users: list[str] = []
    line_of: dict[str, int] = {}
    item2id: dict[str, int] = {}
    sequences: list[list[int]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                raise DataError(path, f"line {lineno}: empty line (expected 'user item item ...')")
            user, seq = parts[0], parts[1:]
            if user in line_of:
                raise DataError(path, f"line {lineno}: user {user} already appears on line {line_of[user]}")
            if len(seq) < MIN_INTERACTIONS:
                raise DataError(path, f"line {lineno}: user {user} has {len(seq)} item(s); leave-one-out "
                                      f"needs at least {MIN_INTERACTIONS}")
            line_of[user] = lineno
            users.append(user)
            sequences.append([item2id.setdefault(i, len(item2id)) for i in seq])
    if not users:
        raise DataError(path, "no users: the file is empty")
    return users, list(item2id), sequences


def prepare_p5(src: str | Path, name: str, out: str | Path = "data", overwrite: bool = False) -> dict[str, Any]:
    """Convert the P5 folder ``src`` into ``<out>/<name>/``; returns summary statistics."""
    from genrec.data.prepare import _write_id_map

    src = Path(src)
    if not src.is_dir():
        raise DataError(src, "P5 folder not found")
    users, items, sequences = read_user_sequences(src / SEQUENCE_FILE)
    item_json = None
    names_path = src / NAMES_FILE
    if names_path.is_file():
        names = read_names(names_path)
        missing = [a for a in items if a not in names]
        if missing:
            raise DataError(names_path, f"{len(missing)} of {len(items)} items of {SEQUENCE_FILE} have no name "
                                        f"(first: {missing[:3]})")
        item_json = {str(k): {"title": names[a], "asin": a} for k, a in enumerate(items)}

    dir = Path(out) / name
    dir.mkdir(parents=True, exist_ok=True)
    deleted = guard_dataset_dir(dir, name, overwrite)
    atomic_write_json(dir / f"{name}.inter.json", {str(u): s for u, s in enumerate(sequences)})
    if item_json is not None:
        atomic_write_json(dir / f"{name}.item.json", item_json)
    elif (dir / f"{name}.item.json").exists():
        # an item.json of the old data would no longer describe these items
        (dir / f"{name}.item.json").unlink()
        logger.warning("deleted %s (no %s to rebuild it from)", dir / f"{name}.item.json", NAMES_FILE)
    _write_id_map(dir / f"{name}.item2id", items)
    _write_id_map(dir / f"{name}.user2id", users)
    n_inter = sum(len(s) for s in sequences)
    logger.info("prepared %s from %s: %d users, %d items, %d interactions", name, src, len(users), len(items), n_inter)
    return {"layout": "p5", "users": len(users), "items": len(items), "interactions": n_inter,
            "mean_seq_len": round(n_inter / len(users), 4), "item_names": item_json is not None,
            "deleted": [p.name for p in deleted], "out": str(dir)}
