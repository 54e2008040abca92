"""HyperReenact tests run their tiny networks on one thread: they gain nothing from intra-op threads, and on the
shared 2-core machine two threads spin against each other (2-5 s per step instead of 0.1 s)."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
