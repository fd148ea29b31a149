"""One process at a time per run folder.

A run folder holds ``.lock``; a run keeps an exclusive ``flock`` on it for its whole life. The
operating system drops a ``flock`` when its process dies (even on ``kill -9``), so a lock left by a
dead run is never mistaken for a live one; the pid written inside only makes the error message
useful. Locks are per open file, so a second attempt from the same process is refused as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """The run folder is in use by another live run (a ValueError so the CLIs report it as usage)."""


class RunLock:
    """An exclusive lock on ``run_dir``; released by :meth:`release`, garbage collection or process exit."""

    def __init__(self, run_dir: str | os.PathLike):
        self._file = None
        self.run_dir = Path(run_dir)
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / LOCK_NAME
        # "a+": never truncate a file whose owner is alive; its pid is still to be read
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise RunLockedError(f"run folder {self.run_dir} is in use by another run (pid {owner}, lock {self.path}); "
                                 "wait for it to finish or choose another --run") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        _held.add(self)

    def release(self) -> None:
        if self._file is not None:
            # A run that failed before writing anything leaves no folder behind. The lock file is
            # removed while still locked, so a process that opened it meanwhile is refused rather
            # than locking a file no one else can see; otherwise the file stays.
            empty = self._created and [p.name for p in self.run_dir.iterdir()] == [LOCK_NAME]
            with contextlib.suppress(OSError):
                if empty:
                    self.path.unlink()
                else:
                    self._file.seek(0)
                    self._file.truncate()
            self._file.close()  # closing the last descriptor drops the flock
            self._file = None
            if empty:
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
        _held.discard(self)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


_held: "weakref.WeakSet[RunLock]" = weakref.WeakSet()


@contextlib.contextmanager
def released_on_exit() -> Iterator[None]:
    """Release every lock taken inside the block when it ends, however it ends.

    For code that takes a lock deep inside a constructor that may fail half-way (``Trainer``).
    """
    before = set(_held)
    try:
        yield
    finally:
        for lock in list(_held):
            if lock not in before:
                lock.release()


def claim_run_dir(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool, main: bool = True,
                  outputs: tuple[str, ...] = ("best", "checkpoints"), also_remove: tuple[str, ...] = ("eval",),
                  broadcast: Callable[[list], Any] | None = None) -> RunLock | None:
    """Lock ``run_dir`` for a run and make sure it will not silently replace an earlier run's results.

    A fresh run (neither ``resume`` nor ``overwrite``) into a folder holding any of ``outputs`` is
    refused; with ``overwrite`` those (and ``also_remove``) are deleted first. Only the main
    process locks and checks; ``broadcast`` (accelerate's ``broadcast_object_list``) hands its
    verdict to the other processes so every process fails alike. Raises ValueError.
    """
    run_dir = Path(run_dir)
    verdict: list[str | None] = [None]
    lock = None
    if main:
        try:
            if resume and overwrite:
                raise ValueError("give --resume (continue the run) or --overwrite (replace it), not both")
            lock = RunLock(run_dir)
            found = [name for name in outputs if (run_dir / name).exists()]
            if found and not resume:
                if not overwrite:
                    raise ValueError(f"run folder {run_dir} already holds a run ({', '.join(n + '/' for n in found)}); "
                                     "pass --resume to continue it, --overwrite to replace it, or choose another --run")
                for name in (*found, *also_remove):
                    shutil.rmtree(run_dir / name, ignore_errors=True)
        except ValueError as e:
            verdict[0] = str(e)
    if broadcast is not None:
        broadcast(verdict)
    if verdict[0] is not None:
        if lock is not None:
            lock.release()
        raise RunLockedError(verdict[0]) if "in use by another run" in verdict[0] else ValueError(verdict[0])
    return lock
