"""CGH pretraining throughput: one full step (student fwd/bwd, EMA, teacher fwd, loss, enqueue, SGD).

Configurations of the issue: ResNet-18 at 32 px batch 256 (CIFAR) and ResNet-50 at 224 px batch 32
(ImageNet, per GPU), each as CGH (hypercolumn head on layer3+layer4, two cross terms) and as ReSSL
(global head only) side by side, so the cost of the hypercolumn branch can be read off directly.
Prints images/s, peak memory, FLOPs per step (torch.utils.flop_counter) and achieved FLOP/s against a
large matmul timed in the same run.

    python benchmarks/cgh.py [--device cuda] [--iters 3] [--only r18]
"""

from __future__ import annotations

import argparse
import sys
import time
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
from projects.cgh.module import CGHModule  # noqa: E402

CONFIGS = {
    "r18": dict(arch="resnet18", cifar_stem=True, size=32, batch=256, dim=128, queue=4096),
    "r50": dict(arch="resnet50", cifar_stem=False, size=224, batch=32, dim=512, queue=16384),
}
VARIANTS = {
    "CGH": dict(hyper_layers=("layer3", "layer4"), loss_terms={"g2h": 0.5, "h2g": 0.5}),
    "ReSSL": dict(hyper_layers=(), loss_terms={"g2g": 1.0}),
}


def bench(name: str, variant: str, device: str, warmup: int, iters: int) -> dict[str, float]:
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = CGHModule(
        arch=c["arch"],
        cifar_stem=c["cifar_stem"],
        global_dim=c["dim"],
        hyper_dim=c["dim"],
        queue_size=c["queue"],
        **VARIANTS[variant],
    ).to(device)
    model.train()
    opt = torch.optim.SGD(model.student.parameters(), lr=0.05, momentum=0.9)
    views = [torch.randn(c["batch"], 3, c["size"], c["size"], device=device) for _ in range(2)]
    batch = (views, None, None)

    def step() -> None:
        loss, _ = model.step(batch, alpha=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reset_peak_memory(device)
    seconds = timeit(step, warmup=warmup, iters=iters, device=device)
    flops = count_flops(step)
    return {"s": seconds, "img_s": c["batch"] / seconds, "flops": flops, "mem": peak_memory_mb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CONFIGS), nargs="+", default=sorted(CONFIGS))
    args = parser.parse_args()
    t0 = time.time()
    dev = torch.device(args.device)
    ref = matmul_flops_reference(4096 if dev.type == "cuda" else 2048, device=args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; fp32; matmul reference {fmt_rate(ref)}")
    print(
        f"{'config':<26}{'variant':<8}{'ms/step':>10}{'img/s':>9}{'GFLOP/step':>12}{'achieved':>15}"
        f"{'% matmul':>10}{'peak MiB':>10}"
    )
    for name in args.only:
        c = CONFIGS[name]
        label = f"{c['arch']} {c['size']}px b{c['batch']}"
        for variant in VARIANTS:
            r = bench(name, variant, args.device, args.warmup, args.iters)
            rate = r["flops"] / r["s"]
            print(
                f"{label:<26}{variant:<8}{1000 * r['s']:>10.0f}{r['img_s']:>9.1f}{r['flops'] / 1e9:>12.1f}"
                f"{fmt_rate(rate):>15}{100 * rate / ref:>9.1f}%{r['mem']:>10.0f}",
                flush=True,
            )
    note = "CPU peak is the process's peak RSS (cumulative over rows)" if dev.type == "cpu" else "CUDA allocator peak"
    print(f"median of {args.iters} steps after {args.warmup} warm-up; memory: {note}; {time.time() - t0:.0f} s total")


if __name__ == "__main__":
    main()
