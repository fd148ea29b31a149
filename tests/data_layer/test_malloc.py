"""genrec.utils.malloc: large freed buffers are reused from the heap instead of faulted in again."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from genrec.utils.malloc import ENV, reuse_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def _faults_of_repeated_buffers(rounds: int = 6, mb: int = 96) -> int:
    """Minor faults of malloc + touch + free of one large buffer, ``rounds`` times (glibc's malloc)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = mb * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        # (torch's posix_memalign(64) buffers are reused too once the heap holds freed chunks of
        # several sizes, as in training, but not in a one-size loop: the aligned split leaves a
        # tcache sliver that keeps each freed block from merging back into the heap top.)
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)  # touch every page
        libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_large_buffers_stop_faulting_inside_the_block():
    pages = 96 * 2**20 // resource.getpagesize()
    outside = _faults_of_repeated_buffers()
    with reuse_freed_memory() as active:
        assert active
        inside = _faults_of_repeated_buffers()
    assert outside > 4 * pages  # glibc maps (and the kernel zero-fills) a fresh buffer every round
    assert inside < 2 * pages  # the first round grows the heap, the others reuse it
    assert _faults_of_repeated_buffers() > 4 * pages  # mmap is back after the block


def test_switch_and_the_baseline_trainer(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    with reuse_freed_memory() as active:
        assert active is False
    with reuse_freed_memory(enabled=False) as active:
        assert active is False
    import genrec.baselines.trainer as trainer

    seen = []

    class Probe:
        def __init__(self, enabled):
            seen.append(enabled)

        def __enter__(self):
            return True

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(trainer, "reuse_freed_memory", Probe)
    t = trainer.Trainer.__new__(trainer.Trainer)
    t.accelerator = type("A", (), {"device": torch.device("cpu")})()
    t._fit = lambda: "fitted"
    assert t.fit() == "fitted" and seen == [True]
