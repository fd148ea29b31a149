"""Keep freed memory in the process while a training loop runs (glibc only; a no-op elsewhere).

A full-softmax step over ~12k items allocates several logits-sized buffers (``[positions, items]``
floats, 50 MB to 600 MB each) and frees them again. glibc serves every allocation above its mmap
threshold (at most 32 MB) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each
step the kernel maps and zero-fills those pages again: measured on Beauty (SASRec, one thread)
16.8 million minor page faults in 2 minutes and 35% of the CPU time in the kernel. With mmap
and trimming disabled, the buffers come from the heap and are reused by the next step; the price
is that the process keeps its peak heap until the block ends. Caveat: torch allocates with
posix_memalign, whose alignment split can keep a freed block from merging back into the heap top,
so one repeated size may still grow the heap; the baselines therefore also avoid the big buffers
(``genrec.baselines.chunked_ce``), and this setting takes the remaining large ones (evaluation scores).
PyTorch's CPU allocator does not cache, so this is the place to do it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import platform
from typing import Iterator

logger = logging.getLogger(__name__)

# mallopt parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
# Restored afterwards: mmap allowed again, with the thresholds glibc's dynamic scheme converges to
# after large frees (mmap threshold at its 32 MB cap, trim at twice that). Any mallopt call turns
# the dynamic scheme off for good, so the 128 KB start values would mean more mmap than before.
_AFTER = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}
# Trimming off too (-1, mallopt(3)): a batch of long histories needs ~2 GB of logits and their
# gradients, so any finite threshold below that hands the heap back and the next step faults it in.
_KEEP = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: -1}
# GENREC_REUSE_FREED_MEMORY=0 keeps glibc's behaviour (benchmarks/bench_cpu_split.py compares both)
ENV = "GENREC_REUSE_FREED_MEMORY"


def _libc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _set(libc, values: dict[int, int]) -> bool:
    return all(libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in values.items())


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, large buffers are served from (and freed back to) the heap, not mmap.

    Yields whether the setting took effect. Afterwards mmap is allowed again (see ``_AFTER``) and
    later frees may trim the heap.
    """
    enabled = enabled and os.environ.get(ENV, "1") != "0"
    libc = _libc() if enabled else None
    active = bool(libc) and _set(libc, _KEEP)
    if enabled and not active:
        logger.debug("mallopt not available: large buffers keep glibc's default mmap behaviour")
    try:
        yield active
    finally:
        if active:
            _set(libc, _AFTER)
