"""Timing helpers shared by the benchmark scripts (throughput, peak memory, FLOP/s against a matmul).

The machine is shared and noisy: compare variants inside one run, read ratios rather than absolute times.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], warmup: int = 2, iters: int = 5, device: torch.device | str = "cpu") -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def reset_peak_memory(device: torch.device | str = "cpu") -> None:
    """Reset the CUDA peak-memory counter (CPU peak RSS cannot be reset; it is process-wide)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory in MiB: CUDA allocator peak on a GPU, else the process's peak resident set size."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` counted by ``torch.utils.flop_counter`` (forward and backward ops)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops_reference(
    n: int = 2048, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", iters: int = 5
) -> float:
    """Achieved FLOP/s of an ``n x n`` matrix product on this device: the roof to compare steps against."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    seconds = timeit(lambda: a @ b, warmup=2, iters=iters, device=device)
    return 2 * n**3 / seconds


def fmt_rate(x: float) -> str:
    """Human-readable FLOP/s."""
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f} FLOP/s"
