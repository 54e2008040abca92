"""cuda_ops on StyleGAN2's shapes: our reference vs the straightforward formulation (CPU), and the CUDA kernels.

    python benchmarks/ops.py            # full shapes [8,512,64,64] and [4,128,256,256]
    python benchmarks/ops.py --small    # reduced shapes for a shared CPU box

CPU: each op's reference path (polyphase / strided, cuda_ops) against the straightforward zero-insert + pad +
full 2-D depthwise convolution (then subsample), timed interleaved in one run; the ratio is what the issue's
1.5x goal is about. Wall-clock medians and per-process CPU-time medians are both printed (CPU time is steadier
when other jobs share the machine). CUDA (when present): the kernels, the reference on the GPU, achieved GB/s
(bytes read + written once), and peak allocator memory per variant.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import peak_memory_mb, reset_peak_memory, sync  # noqa: E402
from cuda_ops import bias_act, downsample2d, setup_filter, upsample2d  # noqa: E402

FULL_SHAPES = [(8, 512, 64, 64), (4, 128, 256, 256)]
SMALL_SHAPES = [(2, 128, 64, 64), (1, 32, 256, 256)]


def straightforward_upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad: list[int], gain: float):
    """The textbook formulation: zero insertion, zero padding, full depthwise 2-D convolution, subsampling."""
    N, C, H, W = x.shape
    x = x.reshape(N, C, H, 1, W, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(N, C, H * up, W * up)
    x = F.pad(x, pad)
    w = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(C, 1, 1, 1)
    return F.conv2d(x, w, groups=C)[:, :, ::down, ::down]


def straightforward_bias_lrelu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def reset_cpu_peak() -> bool:
    """Reset the process's peak RSS (Linux clear_refs 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


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


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc/self/statm), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_of(fn, device: str) -> float | None:
    """Peak memory (MiB) while running fn once: allocator peak on CUDA, peak RSS growth over the RSS before
    the call on Linux CPU (the peak is reset first; n/a elsewhere)."""
    if device == "cuda":
        torch.cuda.synchronize()
        reset_peak_memory(device)
        fn()
        torch.cuda.synchronize()
        return peak_memory_mb(device)
    if not reset_cpu_peak():
        return None
    base = current_rss_mb()
    fn()
    return max(0.0, peak_memory_mb(device) - base)


def cases(shape, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype)
    b = torch.randn(shape[1], device=device, dtype=dtype)
    f = setup_filter([1, 3, 3, 1], device=device)
    elt = x.element_size()
    n_in = x.numel()
    return [
        (
            "upsample2d x2",
            lambda impl: upsample2d(x, f, impl=impl),
            lambda: straightforward_upfirdn2d(x, f, 2, 1, [2, 1, 2, 1], 4.0),
            (n_in + 4 * n_in) * elt,
        ),
        (
            "downsample2d x2",
            lambda impl: downsample2d(x, f, impl=impl),
            lambda: straightforward_upfirdn2d(x, f, 1, 2, [1, 1, 1, 1], 1.0),
            (n_in + n_in // 4) * elt,
        ),
        (
            "bias_act lrelu",
            lambda impl: bias_act(x, b, act="lrelu", impl=impl),
            lambda: straightforward_bias_lrelu(x, b),
            2 * n_in * elt,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help=f"reduced shapes {SMALL_SHAPES}")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared box)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA section even if a GPU exists")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = SMALL_SHAPES if args.small else FULL_SHAPES
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), iters={args.iters}, shapes={shapes}")

    print("\n== CPU: cuda_ops reference vs straightforward zero-insert + pad + full conv (float32) ==")
    header = f"{'op':<16} {'shape':<20} {'ref ms':>9} {'naive ms':>9} {'ratio':>6} {'cpu ratio':>9}"
    print(header + f" {'max|diff|':>10} {'ref +MiB':>8} {'naive +MiB':>10}")
    for shape in shapes:
        for name, ours, naive, _ in cases(shape, "cpu", torch.float32):
            diff = (ours("ref") - naive()).abs().max().item()
            t = time_interleaved({"ref": lambda o=ours: o("ref"), "naive": naive}, args.iters, "cpu")
            mem_ref, mem_naive = peak_of(lambda o=ours: o("ref"), "cpu"), peak_of(naive, "cpu")
            (w_ref, c_ref), (w_naive, c_naive) = t["ref"], t["naive"]
            fmt_mem = lambda m: f"{m:8.0f}" if m is not None else f"{'n/a':>8}"  # noqa: E731
            print(
                f"{name:<16} {str(list(shape)):<20} {w_ref * 1e3:9.1f} {w_naive * 1e3:9.1f} {w_naive / w_ref:5.2f}x "
                f"{c_naive / c_ref:8.2f}x {diff:10.2e} {fmt_mem(mem_ref)} {fmt_mem(mem_naive):>10}"
            )

    if args.cpu_only or not torch.cuda.is_available():
        print("\n(no CUDA device: kernel timings skipped)")
        return
    print(f"\n== CUDA ({torch.cuda.get_device_name()}): kernels vs reference on the GPU ==")
    print(
        f"{'op':<16} {'shape':<20} {'dtype':<8} {'kernel ms':>9} {'kernel GB/s':>11} {'ref ms':>8} {'ref/kernel':>10} "
        f"{'kernel MiB':>10} {'ref MiB':>8}"
    )
    for shape in shapes:
        for dtype in (torch.float32, torch.float16):
            for name, ours, _, nbytes in cases(shape, "cuda", dtype):
                t = time_interleaved(
                    {"cuda": lambda o=ours: o("cuda"), "ref": lambda o=ours: o("ref")}, args.iters, "cuda"
                )
                mem_k, mem_r = peak_of(lambda o=ours: o("cuda"), "cuda"), peak_of(lambda o=ours: o("ref"), "cuda")
                tk, tr = t["cuda"][0], t["ref"][0]
                print(
                    f"{name:<16} {str(list(shape)):<20} {str(dtype)[6:]:<8} {tk * 1e3:9.3f} {nbytes / tk / 1e9:11.1f} "
                    f"{tr * 1e3:8.3f} {tr / tk:9.2f}x {mem_k:10.0f} {mem_r:8.0f}"
                )


if __name__ == "__main__":
    main()
