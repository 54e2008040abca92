"""HyperReenact inference throughput: reenacted frames/s at 256 px with random full-size weights, peak memory,
achieved FLOP/s against a matmul; the parts side by side (pose encoder, hypernetwork, generator with offsets).

The network is the released architecture at full size (VoxCeleb StyleGAN2 256 px channel_multiplier 1, e4e,
ArcFace IR-SE-50, DECA ResNet-50, the 302.6M-parameter hypernetwork), random weights, fp32, no grad. Per
driving frame (as inference does once the source is inverted): DECA crop + DECA layer4 map, hypernetwork,
generator with 13 weight offsets. Face detection/cropping of the frames is not included.

    python benchmarks/hyperreenact.py [--threads N] [--batches 1,4] [--iters 3] [--device cpu|cuda]
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


def build_full_random_net(device: str) -> torch.nn.Module:
    """The full-size network with random weights (same classes as the released-weight path)."""
    from common.face.deca import DECAEncoder
    from common.face.irse import Backbone
    from common.stylegan2.encoders import Encoder4Editing
    from common.stylegan2.generator import Generator
    from projects.hyperreenact.hypernet import HypernetworkBlocks, official_layer_table
    from projects.hyperreenact.model import AppearanceEncoder, HyperReenactor, PoseEncoder, mean_latent

    torch.manual_seed(0)
    gen = Generator(256, 512, 8, channel_multiplier=1)
    hyper = HypernetworkBlocks(official_layer_table(gen.conv_weight_shapes()))
    net = HyperReenactor(
        gen,
        hyper,
        AppearanceEncoder(Backbone(112, 50, 0.6, "ir_se")),
        PoseEncoder(DECAEncoder()),
        Encoder4Editing(50, "ir_se", stylegan_size=256),
        truncation=0.7,
        trunc_latent=mean_latent(gen, 4096),
    )
    return net.to(device).eval()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--batches", default="1,4")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = a.device
    net = build_full_random_net(dev)
    n_hyper = sum(p.numel() for p in {id(q): q for q in net.hypernet.parameters()}.values())
    print(f"device {dev} ({torch.cuda.get_device_name() if dev == 'cuda' else f'{a.threads} CPU threads'})")
    print(f"hypernetwork parameters: {n_hyper / 1e6:.1f} M; generator 256 px cm1; fp32; random weights")
    ref = matmul_flops_reference(2048, device=dev)
    print(f"matmul 2048 reference: {fmt_rate(ref)}")
    with torch.no_grad():
        src = torch.rand(1, 3, 256, 256, device=dev) * 2 - 1
        lm5 = torch.tensor([[[96.0, 110], [160, 110], [128, 145], [102, 180], [154, 180]]], device=dev)
        w = net.invert(src)
        _, f_app = net.app_encoder(src, lm5)
        print(f"{'batch':>5s} {'part':<28s} {'ms/call':>10s} {'frames/s':>10s} {'GFLOP/frame':>12s} {'achieved':>14s}")
        for b in [int(x) for x in a.batches.split(",")]:
            bench_batch(net, b, w, f_app, dev, a.iters)


def bench_batch(net: torch.nn.Module, b: int, w: torch.Tensor, f_app: torch.Tensor, dev: str, iters: int) -> None:
    """Time the per-frame parts at batch ``b`` and print one row each plus the peak memory."""
    tgt = torch.rand(b, 3, 256, 256, device=dev) * 2 - 1
    boxes = torch.tensor([[70.0, 70, 186, 200]], device=dev).expand(b, 4)
    wb, fa = w.expand(b, -1, -1), f_app.expand(b, -1, -1, -1)
    _, f_pose = net.pose_encoder(tgt, boxes)
    deltas = [d for d in net.hypernet(f_pose, fa) if d is not None]

    def frame() -> torch.Tensor:
        _, fp = net.pose_encoder(tgt, boxes)
        return net.render(wb, fp, fa)[0]

    parts = {
        "full frame (DECA+hyper+G)": frame,
        "pose encoder (crop+DECA)": lambda: net.pose_encoder(tgt, boxes),
        "hypernetwork": lambda: net.hypernet(f_pose, fa),
        "generator with offsets": lambda: net.generator.synthesis(wb, noise="const", weight_deltas=deltas),
        "generator, no offsets": lambda: net.generator.synthesis(wb, noise="const"),
    }
    reset_peak_memory(dev)
    with torch.no_grad():
        for name, fn in parts.items():
            sec = timeit(fn, warmup=1, iters=iters, device=dev)
            flops = count_flops(fn)
            print(
                f"{b:5d} {name:<28s} {sec * 1e3:10.1f} {b / sec:10.2f} {flops / b / 1e9:12.2f} "
                f"{fmt_rate(flops / sec):>14s}",
                flush=True,
            )
    print(f"{b:5d} peak memory: {peak_memory_mb(dev):.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
