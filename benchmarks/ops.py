"""cuda_ops on StyleGAN2's shapes: our reference vs the straightforward formulation (CPU), and the CUDA kernels.

    python benchmarks/ops.py            # full shapes [8,512,64,64] and [4,128,256,256]
    python benchmarks/ops.py --small    # reduced shapes for a shared CPU box

CPU: each op's reference path (cuda_ops) against the straightforward formulation (``benchmarks._util``:
zero-insert + pad + full 2-D depthwise convolution, then subsample; ``F.leaky_relu`` for bias + activation:
rosinality's CPU fallback), timed interleaved in one run, for three computations: forward (no grad),
forward + backward w.r.t. the input, and double backward (the input gradient taken with ``create_graph``
for an upstream gradient that itself requires grad, then the backward of its squared norm: what R1 and
path-length regularisation do through every op). The ratio (straightforward / ours) is what the issue's 1.5x
goal is about. Wall-clock medians and per-process CPU-time medians are both printed (CPU time is steadier
when other jobs share the machine). CUDA (when present): the kernels, the reference on the GPU, achieved GB/s
(bytes read + written once), and peak allocator memory per variant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import (  # noqa: E402
    peak_memory_mb,
    reset_peak_memory,
    straightforward_bias_act,
    straightforward_upfirdn2d,
    time_interleaved,
)
from cuda_ops import bias_act, downsample2d, setup_filter, upfirdn2d, upsample2d  # noqa: E402

FULL_SHAPES = [(8, 512, 64, 64), (4, 128, 256, 256)]
SMALL_SHAPES = [(2, 128, 64, 64), (1, 32, 256, 256)]
COMPUTATIONS = ("fwd", "fwd+bwd", "double bwd")


def computation(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, kind: str) -> Callable[[], object]:
    """A closure running ``op`` on ``x`` for one of ``COMPUTATIONS`` (upstream gradients drawn once)."""
    if kind == "fwd":

        def run() -> object:
            with torch.no_grad():
                return op(x)

        return run
    xg = x.detach().requires_grad_(True)
    with torch.no_grad():
        gy = torch.randn_like(op(x))
    if kind == "fwd+bwd":
        return lambda: op(xg).backward(gy)
    gy = gy.requires_grad_(True)

    def double() -> None:
        (gx,) = torch.autograd.grad(op(xg), xg, gy, create_graph=True)
        gx.square().sum().backward()
        xg.grad = gy.grad = None

    return double


def reset_cpu_peak() -> bool:
    """Reset the process's peak RSS (Linux clear_refs 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


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
    """(name, ours(x, impl), straightforward(x), bytes moved by one forward, input) per op on ``shape``."""
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, dtype=dtype)
    b = torch.randn(shape[1], device=device, dtype=dtype)
    f = setup_filter([1, 3, 3, 1], device=device)
    elt = x.element_size()
    n_in = x.numel()
    return [
        (
            "upsample2d x2",
            lambda x, impl: upsample2d(x, f, impl=impl),
            lambda x: straightforward_upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4.0),
            (n_in + 4 * n_in) * elt,
            x,
        ),
        (
            "downsample2d x2",
            lambda x, impl: downsample2d(x, f, impl=impl),
            lambda x: straightforward_upfirdn2d(x, f, down=2, padding=[1, 1, 1, 1]),
            (n_in + n_in // 4) * elt,
            x,
        ),
        (
            "blur 4x4 pad 1",  # rosinality's Blur after the transposed conv of an upsampling layer
            lambda x, impl: upfirdn2d(x, f, padding=1, impl=impl),
            lambda x: straightforward_upfirdn2d(x, f, padding=1),
            2 * n_in * elt,
            x,
        ),
        (
            "bias_act lrelu",
            lambda x, impl: bias_act(x, b, act="lrelu", impl=impl),
            lambda x: straightforward_bias_act(x, b, act="lrelu"),
            2 * n_in * elt,
            x,
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
    print("(ratio = straightforward / ours; +MiB: peak RSS growth of one forward)")
    header = (
        f"{'op':<16} {'shape':<18} {'computation':<11} {'ours ms':>9} {'naive ms':>9} {'ratio':>6} {'cpu ratio':>9}"
    )
    print(header + f" {'max|diff|':>10} {'ours +MiB':>9} {'naive +MiB':>10}")
    fmt_mem = lambda m: f"{m:9.0f}" if m is not None else f"{'n/a':>9}"  # noqa: E731
    for shape in shapes:
        for name, ours, naive, _, x in cases(shape, "cpu", torch.float32):
            for kind in COMPUTATIONS:
                fns = {
                    "ref": computation(lambda t, o=ours: o(t, "ref"), x, kind),
                    "naive": computation(naive, x, kind),
                }
                t = time_interleaved(fns, args.iters, "cpu")
                (w_ref, c_ref), (w_naive, c_naive) = t["ref"], t["naive"]
                extra = ""
                if kind == "fwd":
                    diff = (fns["ref"]() - fns["naive"]()).abs().max().item()
                    mem_ref, mem_naive = peak_of(fns["ref"], "cpu"), peak_of(fns["naive"], "cpu")
                    extra = f" {diff:10.2e} {fmt_mem(mem_ref)} {fmt_mem(mem_naive):>10}"
                print(
                    f"{name:<16} {str(list(shape)):<18} {kind:<11} {w_ref * 1e3:9.1f} {w_naive * 1e3:9.1f} "
                    f"{w_naive / w_ref:5.2f}x {c_naive / c_ref:8.2f}x" + extra
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
            for name, ours, _, nbytes, x in cases(shape, "cuda", dtype):
                t = time_interleaved(
                    {"cuda": lambda o=ours, x=x: o(x, "cuda"), "ref": lambda o=ours, x=x: o(x, "ref")},
                    args.iters,
                    "cuda",
                )
                mem_k = peak_of(lambda o=ours, x=x: o(x, "cuda"), "cuda")
                mem_r = peak_of(lambda o=ours, x=x: o(x, "ref"), "cuda")
                tk, tr = t["cuda"][0], t["ref"][0]
                print(
                    f"{name:<16} {str(list(shape)):<20} {str(dtype)[6:]:<8} {tk * 1e3:9.3f} {nbytes / tk / 1e9:11.1f} "
                    f"{tr * 1e3:8.3f} {tr / tk:9.2f}x {mem_k:10.0f} {mem_r:8.0f}"
                )


if __name__ == "__main__":
    main()
