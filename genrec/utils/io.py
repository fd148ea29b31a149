"""Atomic file writes: results and checkpoints are never left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


OUTPUT_EXTENSIONS = (".json", ".md", ".png")


def output_stem(value: str | os.PathLike) -> Path:
    """A benchmark's ``--out`` stem; a file name given instead (``x.json``, ``x.md``, ``x.png``) is cut to its stem."""
    stem = Path(value)
    return stem.with_suffix("") if stem.suffix in OUTPUT_EXTENSIONS else stem


def stem_file(stem: str | os.PathLike, ext: str) -> Path:
    """``<stem><ext>``, appended: ``with_suffix`` would cut a stem such as ``..._dropout0.2`` at its dot
    (two runs once shared one file that way, and a result went out under a shorter name)."""
    stem = Path(stem)
    return stem.with_name(stem.name + ext)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic.
    ``suffix`` lets writers that insist on an extension (``np.save``) keep it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_outputs(paths: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """Temporary paths for several files that are renamed into place together after the block.

    Nothing is renamed unless the whole block succeeds, and every temporary file is removed on
    failure, so files that describe each other (codes and their report) are replaced as one unit.
    """
    paths = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield list(tmps)
        for tmp in tmps:
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(paths: list[str | os.PathLike]) -> list[Path]:
    """Delete temporary files (``.<name>.*.tmp``) a killed writer of ``paths`` left behind."""
    import logging

    removed = []
    for path in map(Path, paths):
        if path.parent.is_dir():
            for tmp in sorted(path.parent.glob(f".{path.name}.*.tmp")):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
                logging.getLogger(__name__).warning("removed %s, left by an interrupted write", tmp)
    return removed


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` inside the block, so cleanup handlers run."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path`` that replaces ``path`` when the block succeeds."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    # Through a file handle: given a path, np.save appends ".npy" to names that lack it.
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush; a crash can lose at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, tolerate_torn_tail: bool = True) -> list[dict]:
    """The records of a JSON-lines file written by ``append_jsonl``.

    A crash while appending can leave the final line half-written; with ``tolerate_torn_tail``
    that line is dropped with a warning naming the file. A malformed line anywhere else is not a
    torn write, so it is an error naming the file and line.
    """
    import logging

    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((k for k, ln in enumerate(lines) if ln.strip()), default=-1)
    records = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if k == last and tolerate_torn_tail:
                logging.getLogger(__name__).warning("%s: dropped a torn final line %d (%s): %.60r",
                                                    path, k + 1, e.msg, line)
                break
            raise ValueError(f"{path}: line {k + 1}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {k + 1}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records
