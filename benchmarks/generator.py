"""StyleGAN2 generator throughput: images/s, peak memory and achieved FLOP/s against a matmul, variants side by side.

CPU (always): 256 px, channel_multiplier 1 (HyperReenact's VoxCeleb generator), batch 4, random weights, fp32,
inference (no grad). Variants: the grouped modulated conv (rosinality's fused path, default), the activation-
scaling path (one shared conv per layer), the style-space path (StyleMask) and weight offsets on all 13 convs
(HyperReenact). GPU (when CUDA is available): the same at 1024 px, channel_multiplier 2 (FFHQ config-f).

    python benchmarks/generator.py [--threads N] [--iters 3] [--skip-gpu]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._util import (  # noqa: E402
    count_flops,
    fmt_rate,
    matmul_flops_reference,
    peak_memory_mb,
    reset_peak_memory,
    timeit,
)
from common.stylegan2 import Generator  # noqa: E402


def bench(size: int, cm: int, batch: int, device: str, iters: int) -> list[tuple[str, float, float, float, float]]:
    torch.manual_seed(0)
    g = Generator(size, channel_multiplier=cm).to(device).eval().requires_grad_(False)
    wplus = g.mapping(torch.randn(batch, 512, device=device)).unsqueeze(1).repeat(1, g.n_latent, 1)
    styles = g.styles_from_wplus(wplus)
    deltas = [0.01 * torch.randn(batch, *s, device=device) for s in g.conv_weight_shapes()]
    variants = {
        "synthesis, grouped modconv (default)": lambda: g.synthesis(wplus),
        "synthesis, activation-scaling modconv": lambda: g.synthesis(wplus),
        "synthesis_from_styles (StyleMask)": lambda: g.synthesis_from_styles(styles),
        f"synthesis + offsets on all {len(deltas)} convs (HyperReenact)": lambda: g.synthesis(
            wplus, weight_deltas=deltas
        ),
    }
    rows = []
    with torch.inference_mode():
        flops = count_flops(lambda: g.synthesis(wplus))
        for name, fn in variants.items():
            g.set_fused_modconv("activation-scaling" not in name)
            reset_peak_memory(device)
            sec = timeit(fn, warmup=1, iters=iters, device=device)
            rows.append((name, batch / sec, sec, peak_memory_mb(device), flops / sec))
        g.set_fused_modconv(True)
    return rows


def report(title: str, rows, ref_flops: float) -> None:
    print(f"\n{title}")
    print(f"{'variant':<50} {'img/s':>8} {'s/batch':>8} {'peak MiB':>9} {'FLOP/s':>14} {'of matmul':>9}")
    print("(peak MiB: CUDA allocator peak per variant on GPU; on CPU the process's peak RSS so far, cumulative)")
    for name, ips, sec, mem, fps in rows:
        print(f"{name:<50} {ips:8.2f} {sec:8.3f} {mem:9.0f} {fmt_rate(fps):>14} {fps / ref_flops:9.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--skip-gpu", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    ref = matmul_flops_reference(2048, device="cpu")
    print(f"CPU matmul reference (2048^2 fp32): {fmt_rate(ref)}")
    report(
        f"CPU: 256 px, channel_multiplier 1, batch {args.batch}, fp32, inference (FLOPs of one synthesis: "
        f"counted by torch.utils.flop_counter)",
        bench(256, 1, args.batch, "cpu", args.iters),
        ref,
    )
    if torch.cuda.is_available() and not args.skip_gpu:
        ref = matmul_flops_reference(8192, device="cuda", iters=10)
        print(f"\nGPU {torch.cuda.get_device_name()}: matmul reference (8192^2 fp32): {fmt_rate(ref)}")
        report(
            f"GPU: 1024 px, channel_multiplier 2, batch {args.batch}, fp32, inference (cuda_ops kernels)",
            bench(1024, 2, args.batch, "cuda", max(args.iters, 5)),
            ref,
        )
    else:
        print("\nGPU: no CUDA device here; the 1024 px run needs one")


if __name__ == "__main__":
    main()
