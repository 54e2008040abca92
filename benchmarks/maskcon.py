"""MaskCon training-step throughput: ResNet-18 (CIFAR stem) at 32 px, batch 128, queue K=8192 (the official recipe).

    python benchmarks/maskcon.py                 # CPU (and the GPU when there is one)
    python benchmarks/maskcon.py --device cuda --batch 128 --iters 20

Prints, side by side in one run: the full training step (EMA update, query forward+backward, key forward, soft
targets against the queue, SGD step, enqueue), the same step with the SelfCon loss (no soft targets), the loss
alone, and a matrix product as the FLOP/s roof. FLOPs are counted by torch.utils.flop_counter.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._util import count_flops, fmt_rate, matmul_flops_reference, peak_memory_mb, reset_peak_memory, timeit
from projects.maskcon.loss import maskcon_loss
from projects.maskcon.module import MaskConModule


def make_step(mode: str, batch: int, size: int, device: str, queue: int):
    model = MaskConModule(mode=mode, arch="resnet18", cifar_stem=True, queue_size=queue, num_coarse=20).to(device)
    model.train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    xk = torch.randn(batch, 3, size, size, generator=g).to(device)
    xq = torch.randn(batch, 3, size, size, generator=g).to(device)
    coarse = torch.randint(0, 20, (batch,), generator=g).to(device)
    model.queue.labels.copy_(torch.randint(0, 20, (queue,), generator=g).to(device))
    b = ((xk, xq), coarse, coarse, torch.arange(batch, device=device))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model.training_step(b, 0)
        loss.backward()
        opt.step()

    return step


def bench_device(
    device: str, batch: int, size: int, iters: int, queue: int, modes: list[str]
) -> list[tuple[str, float, float, float]]:
    rows = []
    roof = matmul_flops_reference(2048, torch.float32, device)
    for mode in modes:
        # every op of the step is linear in the batch: count FLOPs on 8 images and scale (counting is slow on CPU)
        flops = count_flops(make_step(mode, 8, size, device, queue)) * batch / 8
        step = make_step(mode, batch, size, device, queue)
        reset_peak_memory(device)
        sec = timeit(step, warmup=1, iters=iters, device=device)
        rows.append((f"train step ({mode})", batch / sec, flops / sec, peak_memory_mb(device)))
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(batch, 256, generator=g), dim=1).to(device).requires_grad_(True)
    k = torch.nn.functional.normalize(torch.randn(batch, 256, generator=g), dim=1).to(device)
    u = torch.nn.functional.normalize(torch.randn(queue, 256, generator=g), dim=1).to(device)
    y, uy = torch.randint(0, 20, (batch,)).to(device), torch.randint(0, 20, (queue,)).to(device)

    def loss_only() -> None:
        maskcon_loss(q, k, u, y, uy).backward()

    flops = count_flops(loss_only)
    sec = timeit(loss_only, warmup=2, iters=max(iters, 5), device=device)
    rows.append(("MaskCon loss alone (fwd+bwd)", batch / sec, flops / sec, peak_memory_mb(device)))
    rows.append(("matmul 2048^2 fp32 (roof)", float("nan"), roof, float("nan")))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu, then cuda when available)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--queue", type=int, default=8192)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["maskcon", "selfcon"], help="losses whose full step is timed")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; ResNet-18 CIFAR stem, {args.size} px, "
          f"batch {args.batch}, K={args.queue}")  # fmt: skip
    for dev in devices:
        name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
        print(f"\n{name}")
        print(f"{'variant':34s} {'images/s':>10s} {'achieved':>14s} {'peak MiB':>9s}")
        iters = args.iters if dev == "cpu" else max(args.iters, 20)
        rows = bench_device(dev, args.batch, args.size, iters, args.queue, args.modes)
        roof = rows[-1][2]
        for label, ips, fps, mem in rows:
            frac = f" ({100 * fps / roof:4.1f}%)" if label != rows[-1][0] else ""
            ips_s = f"{ips:10.1f}" if ips == ips else f"{'-':>10s}"
            mem_s = f"{mem:9.0f}" if mem == mem else f"{'-':>9s}"
            print(f"{label:34s} {ips_s} {fmt_rate(fps):>14s}{frac} {mem_s}")
        print("(percent: achieved FLOP/s over the matmul roof measured in the same run; peak memory on CPU is the")
        print(" process's peak RSS so far, on CUDA the allocator peak of that variant)")


if __name__ == "__main__":
    main()
