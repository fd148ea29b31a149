"""JSON reading with errors that say which file is broken and where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genrec.data.errors import DataError


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def read_json(path: str | Path) -> Any:
    """Parse ``path``; a key given twice in one object is an error (json would keep the later silently)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as e:
        raise DataError(path, f"key {e.args[0]!r} appears twice in one object (the later entry would silently "
                              "replace the earlier)") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
