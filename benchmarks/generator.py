"""StyleGAN2 generator throughput: images/s, peak memory and achieved FLOP/s against a matmul, variants side by side.

CPU (always), 256 px, channel_multiplier 1 (HyperReenact's VoxCeleb generator), random weights, fp32:

1. Ours against the straightforward formulation (``benchmarks._util.straightforward_ops``: rosinality's CPU code,
   i.e. zero-insertion + pad + depthwise-conv ``upfirdn2d``, ``F.leaky_relu`` bias + activation and the grouped
   modulated convolution always) in one run, calls interleaved, for what the papers compute:
   forward (no grad); forward + backward w.r.t. W+ (frozen generator: StyleMask, HyperReenact, e4e training);
   double backward (path-length regularisation: the gradient of ``<G(W+), noise>`` w.r.t. W+ with
   ``create_graph``, then the backward of its penalty into the generator's weights and W+).
2. Inference variants, batch 4: the grouped modulated conv (rosinality's fused path, our default without grad),
   the activation-scaling path (one shared conv per layer), the style-space path (StyleMask) and weight offsets
   on all 13 convs (HyperReenact).

GPU (when CUDA is available): table 2 at 1024 px, channel_multiplier 2 (FFHQ config-f).

    python benchmarks/generator.py [--threads N] [--iters 3] [--grad-batch 2] [--skip-gpu] [--skip-grad]
"""

from __future__ import annotations

import argparse
import math
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
    straightforward_ops,
    time_interleaved,
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
        "synthesis, grouped modconv (default w/o grad)": lambda: g.synthesis(wplus),
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
        g.set_fused_modconv(None)
    return rows


def grad_steps(g: Generator, wplus: torch.Tensor) -> dict:
    """The three computations of table 1, each a closure running one batch."""
    params = [p for p in g.parameters()]

    def forward() -> None:
        with torch.no_grad():
            g.synthesis(wplus)

    def forward_backward() -> None:
        g.requires_grad_(False)
        w = wplus.detach().requires_grad_(True)
        img = g.synthesis(w)
        img.square().mean().backward()

    def double_backward() -> None:
        # rosinality's g_path_regularize: grad of <img, noise / sqrt(HW)> w.r.t. W+ with create_graph, then the
        # penalty's backward into the weights (and W+); the mean path length stands in for its running average.
        g.requires_grad_(True)
        w = wplus.detach().requires_grad_(True)
        img = g.synthesis(w)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), w, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        (lengths - lengths.detach().mean()).square().mean().backward()
        for p in params:
            p.grad = None
        g.requires_grad_(False)

    return {"forward (no grad)": forward, "fwd + bwd w.r.t. W+": forward_backward, "double backward": double_backward}


def bench_grad(size: int, cm: int, batch: int, iters: int, check: bool = True) -> None:
    """Table 1: ours vs the straightforward formulation, interleaved, median seconds per batch."""
    torch.manual_seed(0)
    g = Generator(size, channel_multiplier=cm).eval().requires_grad_(False)
    wplus = g.mapping(torch.randn(batch, 512)).unsqueeze(1).repeat(1, g.n_latent, 1).detach()
    if check:
        with torch.no_grad():
            ours = g.synthesis(wplus)
            with straightforward_ops():
                naive = g.synthesis(wplus)
        print(f"outputs: max|ours - straightforward| = {(ours - naive).abs().max().item():.2e} (images in ~[-1, 1])")
    print(f"{'computation':<22} {'ours s':>8} {'straightf. s':>12} {'ours img/s':>10} {'ratio':>6} {'cpu ratio':>9}")
    for name, fn in grad_steps(g, wplus).items():

        def naive(fn=fn) -> None:
            with straightforward_ops():
                fn()

        t = time_interleaved({"ours": fn, "naive": naive}, iters, "cpu")
        (w_o, c_o), (w_n, c_n) = t["ours"], t["naive"]
        print(f"{name:<22} {w_o:8.3f} {w_n:12.3f} {batch / w_o:10.2f} {w_n / w_o:5.2f}x {c_n / c_o:8.2f}x")


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
    ap.add_argument("--batch", type=int, default=4, help="batch of the inference-variant table")
    ap.add_argument("--grad-batch", type=int, default=2, help="batch of the ours-vs-straightforward table")
    ap.add_argument("--grad-size", type=int, default=256, help="resolution of the ours-vs-straightforward table")
    ap.add_argument("--skip-gpu", action="store_true")
    ap.add_argument("--skip-grad", action="store_true", help="skip the ours-vs-straightforward table")
    ap.add_argument("--skip-variants", action="store_true", help="skip the inference-variant table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    if not args.skip_grad:
        print(
            f"\nCPU: ours vs straightforward (rosinality's CPU formulation), {args.grad_size} px, channel_multiplier 1, "
            f"batch {args.grad_batch}, fp32, median of {args.iters} interleaved runs; ratio = straightforward / ours"
        )
        bench_grad(args.grad_size, 1, args.grad_batch, args.iters)
    if args.skip_variants:
        return
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
