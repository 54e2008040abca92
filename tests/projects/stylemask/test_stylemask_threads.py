"""StyleMask's tests run on one intra-op thread (tests/conftest.py, ONE_THREAD_DIRS)."""

import torch


def test_one_thread():
    assert torch.get_num_threads() == 1
