"""Guard a dataset folder that is about to be (re)written.

Codes (``<ds>.index*.json``) and embeddings (``<ds>*.npy``, masks included) are derived from a
dataset's items; rewriting the interactions or items without removing them would let training
silently use codes of the old data. So writers refuse an existing dataset unless told to
overwrite, and then delete what was derived from it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genrec.data.errors import DataError

logger = logging.getLogger(__name__)

# Files whose presence means "a dataset already lives here".
_DATASET_FILES = (".inter.json", ".item.json", ".item2id", ".user2id", ".train.inter", ".test.inter")


def derived_files(dir: Path, name: str) -> list[Path]:
    """Code and embedding files of dataset ``name`` in ``dir`` (sorted)."""
    found = set(dir.glob(f"{name}.index*.json")) | set(dir.glob(f"{name}.*npy"))
    return sorted(p for p in found if p.is_file() or p.is_symlink())


def guard_dataset_dir(dir: Path, name: str, overwrite: bool) -> list[Path]:
    """Refuse an existing dataset in ``dir`` unless ``overwrite``; then delete its derived files.

    Returns the deleted paths (each also logged).
    """
    existing = [dir / f"{name}{ext}" for ext in _DATASET_FILES if (dir / f"{name}{ext}").exists()]
    derived = derived_files(dir, name) if dir.is_dir() else []
    if not existing and not derived:
        return []
    if not overwrite:
        what = ", ".join(p.name for p in (existing + derived)[:4])
        raise DataError(dir, f"already holds dataset {name} ({what}); pass --overwrite to replace it "
                             "(its codes and embeddings are then deleted)")
    for p in derived:
        p.unlink()
        logger.warning("deleted %s (derived from the data being replaced)", p)
    return derived
