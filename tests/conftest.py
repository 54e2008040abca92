"""Shared test configuration: small thread counts, a temporary runs folder, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# Folders whose tests run tiny networks on one thread: they gain nothing from intra-op threads, and on a shared
# 2-core machine two threads spin against each other (2-5 s per step instead of 0.1 s). Other folders keep two
# threads (DDP and benchmark tests set their own).
ONE_THREAD_DIRS = tuple(REPO_ROOT / "tests" / "projects" / name for name in ("dferclip", "hyperreenact", "stylemask"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread_for_tiny_networks(request):
    """One intra-op thread for the modules under :data:`ONE_THREAD_DIRS`, restored afterwards."""
    if not any(d in Path(request.node.path).parents for d in ONE_THREAD_DIRS):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Every test writes runs and looks for weights under its own temporary folder."""
    monkeypatch.setenv("PAPERLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PAPERLAB_WEIGHTS", str(tmp_path / "pretrained"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data files not present at {SHARED_DATA} (only on the developers' machines and CI)")
    return SHARED_DATA
