"""DFER-CLIP tests run their tiny models on one thread: on a loaded 2-core machine two threads were 10x slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
