"""DFER-CLIP training throughput: ViT-B/32, 16 frames at 224 px, random weights, one SGD step per batch.

    python benchmarks/dferclip.py            # CPU at batch 2 (+ GPU fp32 / bf16 at --gpu-batch when available)

Prints clips/s, peak memory, FLOPs per step (torch.utils.flop_counter) and the achieved FLOP/s beside a large
matmul timed in the same run (the roof). The text tower (7 prompts) runs every step, as in training.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._util import count_flops, fmt_rate, matmul_flops_reference, peak_memory_mb, reset_peak_memory, timeit
from projects.dferclip.module import DFERCLIPModule


def bench(device: str, batch: int, dtype: torch.dtype | None, iters: int, frames: int = 16) -> dict[str, float]:
    """Seconds per training step, clips/s, peak MiB and achieved FLOP/s of one configuration."""
    torch.manual_seed(0)
    module = DFERCLIPModule(clip_arch="ViT-B-32", clip_weights=None, num_frames=frames).to(device)
    opt = module.configure_optimizers()["optimizer"]
    video = torch.rand(batch, frames, 3, 224, 224, device=device)
    label = torch.randint(0, 7, (batch,), device=device)
    amp = torch.autocast(device_type=device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step():
        with amp:
            loss = F.cross_entropy(module(video).float(), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = count_flops(step)
    reset_peak_memory(device)
    sec = timeit(step, warmup=1, iters=iters, device=device)
    return {"sec": sec, "clips_s": batch / sec, "peak_mb": peak_memory_mb(device), "flops": flops / sec}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cpu-batch", type=int, default=2)
    p.add_argument("--gpu-batch", type=int, default=48, help="the official batch size")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    roof = matmul_flops_reference(2048, torch.float32, "cpu")
    r = bench("cpu", args.cpu_batch, None, args.iters)
    rows.append(("cpu", "fp32", args.cpu_batch, r, roof))
    if torch.cuda.is_available():
        for name, dt in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
            ref = matmul_flops_reference(8192, torch.float32 if dt is None else torch.bfloat16, "cuda")
            rows.append(("cuda", name, args.gpu_batch, bench("cuda", args.gpu_batch, dt, args.iters + 2), ref))
    print(f"DFER-CLIP train step, ViT-B/32, 16 frames x 224 px, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))  # fmt: skip
    print(f"{'device':6s} {'precision':10s} {'batch':>5s} {'s/step':>8s} {'clips/s':>8s} {'peak MiB':>9s} "
          f"{'achieved':>14s} {'matmul roof':>14s} {'% roof':>7s}")  # fmt: skip
    for dev, name, b, r, ref in rows:
        print(f"{dev:6s} {name:10s} {b:5d} {r['sec']:8.3f} {r['clips_s']:8.2f} {r['peak_mb']:9.0f} "
              f"{fmt_rate(r['flops']):>14s} {fmt_rate(ref):>14s} {100 * r['flops'] / ref:6.1f}%")  # fmt: skip
    print("peak MiB: CUDA allocator peak on the GPU, process peak RSS on the CPU")


if __name__ == "__main__":
    main()
