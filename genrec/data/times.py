"""Interaction times beside the sequences: ``<ds>.time.json`` = ``{user_id: [unix seconds, ...]}``.

Same users, in the same order, and the same lengths as ``<ds>.inter.json``: ``times[u][k]`` is
when user ``u`` interacted with ``sequences[u][k]``. The file is optional; a dataset without it
simply has no times (time-aware models then refuse to run).

Ordering rule for ties (used by ``prepare --recbole``): events are stable-sorted by
``(time, position in the source file)``, so equal times keep the order the file lists them in, and
items and times are ordered by the same permutation. (Amazon ``prepare`` sorts by ``(time, asin)``
instead, so its output does not depend on the order of the dump; see ``genrec.data.prepare``.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from genrec.data.errors import DataError
from genrec.data.jsonio import read_json
from genrec.utils.io import atomic_write_json

Time = int | float


def time_path(dir: str | Path, name: str) -> Path:
    return Path(dir) / f"{name}.time.json"


def stable_time_order(times: Sequence[Time]) -> list[int]:
    """Indices sorting ``times`` ascending, ties kept in input order (the documented rule)."""
    return sorted(range(len(times)), key=lambda k: (times[k], k))


def _as_time(path: Path, user: str, value: object) -> Time:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, f"user {user}: time {value!r} is not a number")
    if not math.isfinite(value):
        raise DataError(path, f"user {user}: time {value!r} is not finite")
    if value < 0:
        raise DataError(path, f"user {user}: time {value!r} is negative")
    return int(value) if float(value).is_integer() else float(value)


def load_times(path: str | Path, users: Sequence[str], sequences: Sequence[Sequence[int]]) -> list[list[Time]]:
    """Read and validate ``path`` against the users and sequence lengths of ``inter.json``."""
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object {user_id: [unix seconds, ...]}")
    keys = list(raw)
    if keys != list(users):
        extra = [u for u in keys if u not in set(users)]
        missing = [u for u in users if u not in raw]
        if extra:
            raise DataError(path, f"user {extra[0]} is not in inter.json ({len(extra)} such users)")
        if missing:
            raise DataError(path, f"user {missing[0]} has no times ({len(missing)} users missing)")
        first = next(k for k, (a, b) in enumerate(zip(keys, users)) if a != b)
        raise DataError(path, f"user {keys[first]}: users are not in the order of inter.json "
                        f"(position {first} should be user {users[first]})")
    out: list[list[Time]] = []
    for user, seq in zip(users, sequences):
        ts = raw[user]
        if not isinstance(ts, list):
            raise DataError(path, f"user {user}: expected a list of times, got {type(ts).__name__}")
        if len(ts) != len(seq):
            raise DataError(path, f"user {user}: {len(ts)} times for {len(seq)} interactions in inter.json")
        out.append([_as_time(path, user, t) for t in ts])
    return out


def write_times(path: str | Path, users: Sequence[str], times: Sequence[Sequence[Time]]) -> None:
    if len(users) != len(times):
        raise ValueError(f"{len(users)} users but {len(times)} time lists")
    atomic_write_json(path, {str(u): [t for t in ts] for u, ts in zip(users, times)})
