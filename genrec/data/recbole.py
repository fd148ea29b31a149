"""RecBole atomic files (``NAME.inter``, ``NAME.item``) into our dataset format.

``python -m genrec.data prepare --recbole DIR --dataset NAME --out data [--min-count 5]`` reads
``DIR/NAME.inter`` (and ``DIR/NAME.item`` when present). Atomic files are tab-separated with a
typed header ``name:type``; types are ``token``, ``token_seq`` (space-separated tokens), ``float``
and ``float_seq``. ``.inter`` needs ``user_id`` and ``item_id``; ``timestamp`` is optional.

Processing order: every user's events are stable-sorted by (time, line in ``.inter``)
(``genrec.data.times``), the first of repeated (user, item) events is kept, users and items are
k-core filtered to a fixed point, then numbered as in ``genrec.data.prepare`` (users by first
event time and id, items by first appearance). Writes ``inter.json``, ``item.json``, ``item2id``,
``user2id`` and, with a timestamp column, ``time.json``; every file is computed before any is
written, and each is written atomically.

``item.json`` comes from the ``.item`` text fields: ``title`` from the first field whose name
contains ``title`` or ``name``; ``categories`` from fields named like ``class``/``genre``/
``categor``; every other token field goes into ``description`` as ``field: value``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.data.errors import DataError
from genrec.data.prepare import _write_id_map, k_core, number
from genrec.data.times import stable_time_order, time_path, write_times
from genrec.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass
class AtomicFile:
    path: Path
    names: list[str]
    types: list[str]
    rows: list[list[Any]]  # parsed values, one list per data line
    lines: list[int]  # line number of each row in the file

    def column(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None


def _parse_value(path: Path, lineno: int, name: str, typ: str, raw: str) -> Any:
    if typ == "token":
        return raw
    if typ == "token_seq":
        return raw.split()
    try:
        if typ == "float":
            return float(raw) if raw.strip() else math.nan
        return [float(x) for x in raw.split()]
    except ValueError:
        raise DataError(path, f"line {lineno}: column {name!r} ({typ}): {raw!r} is not a number") from None


def read_atomic(path: str | Path) -> AtomicFile:
    """Parse one atomic file; an unknown field type or a malformed line is a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            names, types = [], []
            for col, h in enumerate(header, start=1):
                name, sep, typ = h.partition(":")
                if not sep or not name:
                    raise DataError(path, f"header column {col} {h!r}: expected 'name:type'")
                if typ not in FIELD_TYPES:
                    raise DataError(path, f"header column {col} {name!r}: unknown field type {typ!r} "
                                    f"(expected one of {', '.join(FIELD_TYPES)})")
                names.append(name)
                types.append(typ)
            if len(set(names)) != len(names):
                raise DataError(path, f"header repeats a field name: {names}")
            rows, lines = [], []
            for lineno, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) != len(names):
                    raise DataError(path, f"line {lineno}: {len(parts)} tab-separated fields, the header has {len(names)}")
                rows.append([_parse_value(path, lineno, n, t, v) for n, t, v in zip(names, types, parts)])
                lines.append(lineno)
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    return AtomicFile(path, names, types, rows, lines)


def _require(af: AtomicFile, name: str, typ: str) -> int:
    col = af.column(name)
    if col is None:
        raise DataError(af.path, f"no {name!r} column (header: {af.names})")
    if af.types[col] != typ:
        raise DataError(af.path, f"column {name!r} has type {af.types[col]!r}, expected {typ!r}")
    return col


def read_events(af: AtomicFile) -> tuple[list[tuple[str, str, float]], bool]:
    """``[(user, item, time)]`` in file order, and whether the file has times (else time = line)."""
    u_col, i_col = _require(af, "user_id", "token"), _require(af, "item_id", "token")
    t_col = af.column("timestamp")
    if t_col is not None and af.types[t_col] != "float":
        raise DataError(af.path, f"column 'timestamp' has type {af.types[t_col]!r}, expected 'float'")
    events = []
    for row, lineno in zip(af.rows, af.lines):
        if t_col is None:
            events.append((row[u_col], row[i_col], float(lineno)))
            continue
        t = row[t_col]
        if not math.isfinite(t):
            raise DataError(af.path, f"line {lineno}: user {row[u_col]}: missing or non-finite timestamp")
        if t < 0:
            raise DataError(af.path, f"line {lineno}: user {row[u_col]}: negative timestamp {t}")
        events.append((row[u_col], row[i_col], t))
    if not events:
        raise DataError(af.path, "no interactions")
    return events, t_col is not None


def user_sequences(events: list[tuple[str, str, float]]) -> dict[str, list[tuple[float, str]]]:
    """Per user ``[(time, item)]`` stable-sorted by (time, file position), first of repeated items kept."""
    by_user: dict[str, list[tuple[float, str]]] = {}
    for u, i, t in events:
        by_user.setdefault(u, []).append((t, i))
    out = {}
    for u, evs in by_user.items():
        seen: set[str] = set()
        kept = []
        for k in stable_time_order([t for t, _ in evs]):
            t, i = evs[k]
            if i not in seen:
                seen.add(i)
                kept.append((t, i))
        out[u] = kept
    return out


_TITLE = ("title", "name")
_CATEGORY = ("class", "genre", "categor")


def item_texts(af: AtomicFile) -> dict[str, dict[str, Any]]:
    """``{original item id: {title, description, brand, categories, image}}`` from a ``.item`` file."""
    id_col = _require(af, "item_id", "token")
    text_cols = [c for c, t in enumerate(af.types) if c != id_col and t in ("token", "token_seq")]
    title_col = next((c for c in text_cols if any(k in af.names[c].lower() for k in _TITLE)), None)
    cat_cols = [c for c in text_cols if c != title_col and any(k in af.names[c].lower() for k in _CATEGORY)]
    desc_cols = [c for c in text_cols if c != title_col and c not in cat_cols]

    def text(v: Any) -> str:
        return " ".join(v) if isinstance(v, list) else str(v)

    out: dict[str, dict[str, Any]] = {}
    for row in af.rows:
        cats: list[str] = []
        for c in cat_cols:
            vals = row[c] if isinstance(row[c], list) else [row[c]]
            cats.extend(v for v in vals if v and v not in cats)
        desc = "; ".join(f"{af.names[c].replace('_', ' ')}: {text(row[c])}" for c in desc_cols if text(row[c]))
        out.setdefault(row[id_col], {
            "title": text(row[title_col]) if title_col is not None else "",
            "description": desc, "brand": "", "categories": ", ".join(cats), "image": None,
        })
    return out


def prepare_recbole(src: str | Path, name: str, out: str | Path = "data", min_count: int = 5) -> dict[str, Any]:
    """Convert ``src/name.inter`` (+ ``.item``) into ``out/name/``; returns summary statistics."""
    if min_count < 3:
        raise ValueError(f"users need at least 3 interactions for leave-one-out; got --min-count {min_count}")
    src = Path(src)
    inter = read_atomic(src / f"{name}.inter")
    item_file = src / f"{name}.item"
    meta = item_texts(read_atomic(item_file)) if item_file.is_file() else None
    events, has_time = read_events(inter)
    seqs = user_sequences(events)
    duplicates = len(events) - sum(len(s) for s in seqs.values())
    seqs = k_core(seqs, min_count, min_count)
    if not seqs:
        raise DataError(inter.path, f"no users left after the {min_count}-core filter")
    users, items, sequences = number(seqs)
    empty = {"title": "", "description": "", "brand": "", "categories": "", "image": None}
    item_json = {str(k): dict((meta or {}).get(i, empty)) for k, i in enumerate(items)}
    times = [[int(t) if float(t).is_integer() else t for t, _ in seqs[u]] for u in users]

    dir = Path(out) / name
    dir.mkdir(parents=True, exist_ok=True)
    user_keys = [str(u) for u in range(len(users))]
    atomic_write_json(dir / f"{name}.inter.json", dict(zip(user_keys, sequences)))
    atomic_write_json(dir / f"{name}.item.json", item_json, indent=1)
    _write_id_map(dir / f"{name}.item2id", items)
    _write_id_map(dir / f"{name}.user2id", users)
    if has_time:
        write_times(time_path(dir, name), user_keys, times)
    n = sum(len(s) for s in sequences)
    stats = {"source": "recbole", "raw_events": len(events), "duplicate_events": duplicates,
             "users": len(users), "items": len(items), "interactions": n, "mean_seq_len": round(n / len(users), 4),
             "min_count": min_count, "has_times": has_time,
             "items_with_title": sum(bool(v["title"]) for v in item_json.values()), "out": str(dir)}
    logger.info("prepared %s from RecBole files: %d users, %d items, %d interactions", name, len(users), len(items), n)
    return stats
