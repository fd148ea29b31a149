"""Process-group teardown shared by the CLIs that run under ``accelerate launch``."""

from __future__ import annotations

import torch.distributed as dist


def end_process_group() -> None:
    """Destroy the default process group, if one was started, before the interpreter exits.

    Left to interpreter teardown, gloo's worker threads can be destroyed while still joinable:
    the C++ runtime then calls std::terminate ("terminate called without an active exception")
    and the launcher reports SIGABRT although every rank finished its work and wrote its files.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
