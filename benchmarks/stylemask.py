"""StyleMask training-step throughput on CPU: batched face analysis (ours) vs per image (the official code).

    python benchmarks/stylemask.py                       # tiny (32 px) and 256 px, CPU
    python benchmarks/stylemask.py --sizes tiny --batch-tiny 12 --iters 5

One step = generate source/target/cycle-target codes and images (no grad), 3D coefficients and identity of
them, three reenactments (r, h1 = mix(s, t'), h2 = mix(r, t')) rendered with gradient, their coefficients and
identity, the losses, backward into the mask networks, Adam. "batched" runs DECA and ArcFace once per image set;
"per-image" loops over images with batch 1 as the official code does (which also runs a FAN landmark detector
per image; that detector is not part of either variant here, so the official step is slower still).

Sizes: "tiny" = 32 px generator and tiny random face stand-ins (the demo/test path); "256" = 256 px StyleGAN2
(channel multiplier 2) with randomly initialised full-size IR-SE50 ArcFace (112 px) and ResNet-50 DECA encoder
(224 px) and a 5023-vertex morphable model. Random weights: speed only. FLOPs by torch.utils.flop_counter.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._util import count_flops, fmt_rate, matmul_flops_reference, peak_memory_mb, timeit
from projects.stylemask.data import RandomLatentTriplets
from projects.stylemask.module import StyleMaskModule

SIZES = {
    "tiny": dict(
        image_size=32,
        style_dim=32,
        n_mlp=2,
        channel_multiplier=1,
        channel_max=16,
        num_layers_control=5,
        face_models="tiny",
        loss_size=32,
        mean_latent_samples=256,
    ),
    "256": dict(
        image_size=256,
        style_dim=512,
        n_mlp=8,
        channel_multiplier=2,
        num_layers_control=12,
        face_models="random_full",
        loss_size=256,
        mean_latent_samples=1024,
    ),
}


def make_step(size: str, batch: int, per_image: bool, device: str):
    kw = SIZES[size]
    m = StyleMaskModule(random_generator=True, inverter="none", per_image_analysis=per_image, **kw).to(device)
    m.train()
    m.log = m.log_dict = lambda *a, **k: None  # no trainer attached
    opt = m.configure_optimizers()
    ds = RandomLatentTriplets(batch, kw["style_dim"], seed=0)
    b = {k: torch.stack([ds[i][k] for i in range(batch)]).to(device) for k in ds[0]}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        m.training_step(b, 0).backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "256"], choices=sorted(SIZES))
    ap.add_argument("--batch-tiny", type=int, default=12)
    ap.add_argument("--batch-256", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps after the FLOP-counting step")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    device = "cpu"
    roof = matmul_flops_reference(device=device)
    print(f"device cpu, {torch.get_num_threads()} threads; matmul 2048^2 fp32 roof {fmt_rate(roof)}")
    print(
        f"{'size':<6}{'batch':>6}  {'variant':<10}{'s/step':>9}{'steps/s':>9}{'img/s':>8}"
        f"{'GFLOP/step':>12}{'achieved':>14}{'of roof':>8}{'peak RSS MB':>13}  {'speed-up':>8}"
    )
    for size in args.sizes:
        batch = args.batch_tiny if size == "tiny" else args.batch_256
        seconds = {}
        for variant in ("per-image", "batched"):
            step = make_step(size, batch, variant == "per-image", device)
            flops = count_flops(step)  # also the first (untimed) step
            sec = timeit(step, warmup=args.warmup, iters=args.iters, device=device)
            seconds[variant] = sec
            ratio = f"{seconds['per-image'] / sec:7.2f}x" if variant == "batched" else f"{'1.00x':>8}"
            print(
                f"{size:<6}{batch:>6}  {variant:<10}{sec:9.3f}{1 / sec:9.3g}{batch / sec:8.3g}"
                f"{flops / 1e9:12.2f}{fmt_rate(flops / sec):>14}{flops / sec / roof:8.1%}"
                f"{peak_memory_mb(device):13.0f}  {ratio}"
            )
    print("img/s counts source faces reenacted per second (each step also renders 3 reenactments with the cycle).")


if __name__ == "__main__":
    main()
