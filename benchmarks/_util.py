"""Timing helpers shared by the benchmark scripts (throughput, peak memory, FLOP/s against a matmul), and the
straightforward formulation of StyleGAN2's ops that the cuda_ops reference is measured against.

The machine is shared and noisy: compare variants inside one run, read ratios rather than absolute times.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
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


def time_interleaved(fns: dict, iters: int, device: str) -> dict:
    """Median wall and CPU seconds per call of each fn, calls interleaved so load changes hit all alike."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    sync(device)
    for _ in range(iters):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


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


# ---------------------------------------------------------------------------------------------------------------
# The straightforward formulation of StyleGAN2's ops, the baseline our cuda_ops reference is measured against:
# zero insertion + pad + full depthwise convolution (+ subsampling) for upfirdn2d, F.leaky_relu for the fused
# bias + leaky ReLU. This is what rosinality/stylegan2-pytorch's CPU fallback (``upfirdn2d_native``,
# ``fused_leaky_relu`` on CPU) computes; autograd records it as is, so every derivative order works.
# ---------------------------------------------------------------------------------------------------------------


def straightforward_upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """``cuda_ops.upfirdn2d`` (NVIDIA's API, same arguments; ``impl`` ignored) as the textbook formulation.

    ``x`` [N, C, H, W]; ``f`` [fh, fw], separable [taps] or None. The zero-inserted, padded image is built in
    full and convolved with the whole filter at every position; ``down`` then discards outputs.
    """
    from cuda_ops._upfirdn2d import _parse_padding, _parse_scaling

    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim == 1:  # separable [taps]: applied along x then y, i.e. the outer product (gain once per pass)
        f = f[:, None] * f[None, :]
    w = (f * gain).to(x.dtype)
    if not flip_filter:  # convolution = correlation with the flipped filter
        w = w.flip([0, 1])
    N, C, H, W = x.shape
    x = x.reshape(N, C, H, 1, W, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1]).reshape(N, C, H * upy, W * upx)
    x = F.pad(x, [px0, px1, py0, py1])
    x = F.conv2d(x, w[None, None].repeat(C, 1, 1, 1), groups=C)
    return x[:, :, ::downy, ::downx]


def straightforward_rosinality_upfirdn2d(
    input: torch.Tensor,
    kernel: torch.Tensor,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """``cuda_ops.rosinality.upfirdn2d`` (rosinality's API: 2-D kernel convolved, ``pad=(p0, p1)`` on both axes)
    as the textbook formulation."""
    pad = [int(p) for p in pad]
    if len(pad) == 2:
        pad = [pad[0], pad[1], pad[0], pad[1]]
    return straightforward_upfirdn2d(input, kernel, up=up, down=down, padding=pad)


def straightforward_fused_leaky_relu(
    input: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """rosinality's CPU ``fused_leaky_relu``: ``F.leaky_relu(input + bias[channel on dim 1]) * scale``."""
    if bias is not None:
        input = input + bias.view(1, bias.shape[0], *([1] * (input.ndim - 2)))
    return F.leaky_relu(input, negative_slope=negative_slope) * scale


def straightforward_bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """``cuda_ops.bias_act`` (NVIDIA's API; ``impl`` ignored) as plain torch ops recorded by autograd."""
    from cuda_ops._bias_act import bias_act_ref

    return bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def _straightforward_table() -> dict:
    import cuda_ops._bias_act
    import cuda_ops._upfirdn2d
    import cuda_ops.rosinality

    return {
        cuda_ops.rosinality.upfirdn2d: straightforward_rosinality_upfirdn2d,
        cuda_ops.rosinality.fused_leaky_relu: straightforward_fused_leaky_relu,
        cuda_ops._upfirdn2d.upfirdn2d: straightforward_upfirdn2d,
        cuda_ops._bias_act.bias_act: straightforward_bias_act,
    }


def _rosinality_grouped(self, x: torch.Tensor, s: torch.Tensor) -> bool:
    """rosinality's ModulatedConv2d: the grouped convolution unless ``fused=False`` was asked for explicitly."""
    return True if self.fused is None else self.fused


@contextlib.contextmanager
def straightforward_ops(packages: Sequence[str] = ("common", "projects", "cuda_ops", "benchmarks")) -> Iterator[int]:
    """Run StyleGAN2 code as rosinality's code runs on CPU: within the block, every already-imported module of
    ``packages`` that holds one of cuda_ops' ops (``upfirdn2d``, ``bias_act`` and rosinality's
    ``upfirdn2d``/``fused_leaky_relu``, however imported) calls the straightforward formulation instead, and
    ``common.stylegan2.layers.ModulatedConv2d`` always takes the grouped convolution (rosinality's only path;
    ours chooses by what is computed). Restored on exit. Yields the number of names swapped.

    Works on module globals, so it covers ``from cuda_ops.rosinality import upfirdn2d`` in
    ``common.stylegan2.layers``, ``FusedLeakyReLU`` (which looks ``fused_leaky_relu`` up in
    ``cuda_ops.rosinality``), ``upsample2d`` & co. (which call ``cuda_ops._upfirdn2d.upfirdn2d``), and any
    later module (a discriminator, a training script) imported before the block. Not thread-safe.
    """
    table = _straightforward_table()
    by_id = {id(k): v for k, v in table.items()}
    swapped: list[tuple[object, str, object]] = []
    for name, mod in list(sys.modules.items()):
        if mod is None or name.split(".")[0] not in packages:
            continue
        for attr, value in list(vars(mod).items()):
            if id(value) in by_id:
                swapped.append((mod, attr, value))
                setattr(mod, attr, by_id[id(value)])
    layers = sys.modules.get("common.stylegan2.layers")
    if layers is not None and hasattr(layers.ModulatedConv2d, "_grouped"):
        swapped.append((layers.ModulatedConv2d, "_grouped", layers.ModulatedConv2d._grouped))
        layers.ModulatedConv2d._grouped = _rosinality_grouped
    try:
        yield len(swapped)
    finally:
        for mod, attr, value in reversed(swapped):
            setattr(mod, attr, value)
