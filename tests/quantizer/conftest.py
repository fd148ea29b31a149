"""The quantizer tests run one thread: tiny tensors, where thread hand-offs cost more than they save
(badly so on a shared machine), and index.train(--threads 1) changes the process-wide setting."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
