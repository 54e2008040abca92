"""Where the face-world reenactment benchmark's pixel error comes from: the pixels reenactment must change vs the rest.

In a cross pair the exact answer ``render(source identity, driver pose and expression)`` shares most of its pixels
with the source (background, hair and skin colours belong to the identity), so copying the source is exact there
and wrong only where the head moved or the expression changed. A method that renders through the generator pays
the generator's reconstruction error everywhere. This script splits each method's squared error between

* ``changed``: pixels where the source differs from the answer (any channel by more than ``--threshold`` on the
  [-1, 1] scale; 0.03 is 4/255), the part reenactment has to get right, and
* ``unchanged``: the rest, where copying the source is exact,

and prints PSNR over each region and over the whole image, each from the squared error pooled over all pairs (the
benchmark averages per-image PSNRs instead, about 1 dB higher on these pairs), for the shipped StyleMask and
HyperReenact and the baselines, on the benchmark's own held-out pairs::

    python benchmarks/faceworld_regions.py [--seeds 0 1] [--num-pairs 200] [--out runs/faceworld_benchmark/regions.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import Tensor

METHODS = ("stylemask", "hyperreenact", "copy_source", "copy_driver", "invert_truth")


def changed_mask(source: Tensor, truth: Tensor, threshold: float = 0.03) -> Tensor:
    """``[B, H, W]`` bool: pixels where ``source`` and ``truth`` (``[B, 3, H, W]`` in [-1, 1]) differ by more than
    ``threshold`` in any channel."""
    if source.shape != truth.shape or source.dim() != 4:
        raise ValueError(f"changed_mask: need two [B,3,H,W] tensors of one shape, got {source.shape}, {truth.shape}")
    return (source - truth).abs().amax(dim=1) > threshold


def region_sums(output: Tensor, truth: Tensor, mask: Tensor) -> dict[str, float]:
    """Sums over a batch: squared error (mean over channels per pixel) and pixel counts inside and outside ``mask``."""
    se = (output.float() - truth.float()).pow(2).mean(dim=1)  # [B, H, W]
    inside = mask.to(se.dtype)
    return {
        "se_changed": float((se * inside).sum()),
        "se_unchanged": float((se * (1 - inside)).sum()),
        "n_changed": float(inside.sum()),
        "n_unchanged": float((1 - inside).sum()),
    }


def psnr_from_sums(se: float, n: float, data_range: float = 2.0) -> float:
    """PSNR (dB) of a pooled squared error ``se`` over ``n`` values (``inf`` when exact, ``nan`` when empty)."""
    if n <= 0:
        return math.nan
    mse = se / n
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def summarize(sums: dict[str, float]) -> dict[str, float]:
    """Region PSNRs and the changed fraction from accumulated :func:`region_sums`."""
    n = sums["n_changed"] + sums["n_unchanged"]
    return {
        "psnr_all": psnr_from_sums(sums["se_changed"] + sums["se_unchanged"], n),
        "psnr_changed": psnr_from_sums(sums["se_changed"], sums["n_changed"]),
        "psnr_unchanged": psnr_from_sums(sums["se_unchanged"], sums["n_unchanged"]),
        "changed_fraction": sums["n_changed"] / n if n else math.nan,
        "error_share_changed": sums["se_changed"] / (sums["se_changed"] + sums["se_unchanged"])
        if sums["se_changed"] + sums["se_unchanged"] > 0
        else math.nan,
    }


@torch.no_grad()
def measure(seeds: list[int], num_pairs: int, batch_size: int, threshold: float, mode: str = "cross") -> list[dict]:
    """One row per (seed, method): the shipped StyleMask and HyperReenact and the three baselines on the
    benchmark's pairs ``ReenactmentPairs("test", 64, num_pairs, mode, seed)``."""
    from torch.utils.data import DataLoader

    from projects.hyperreenact.evaluate import _load_faceworld, reenacted
    from projects.hyperreenact.faceworld import FaceWorldEvaluationPairs
    from projects.stylemask.evaluate import method_outputs
    from projects.stylemask.faceworld import load_trained

    stylemask = load_trained()
    hyper = _load_faceworld(None).eval()
    size = int(stylemask.generator.size)
    rows = []
    for seed in seeds:
        pairs = FaceWorldEvaluationPairs("test", size, num_pairs, mode, seed)
        acc = {m: {"se_changed": 0.0, "se_unchanged": 0.0, "n_changed": 0.0, "n_unchanged": 0.0} for m in METHODS}
        for b in DataLoader(pairs, batch_size=batch_size):
            source, driver, truth = b["source"], b["target"], b["truth"]
            mask = changed_mask(source, truth, threshold)
            sm_batch = {"source": source, "driver": driver, "target": truth}
            outputs = {
                "stylemask": method_outputs(stylemask, "stylemask", sm_batch),
                "hyperreenact": reenacted(hyper, b, "hyperreenact"),
                "copy_source": source,
                "copy_driver": driver,
                "invert_truth": reenacted(hyper, b, "invert_truth"),
            }
            for m, out in outputs.items():
                for k, v in region_sums(out.clamp(-1, 1), truth, mask).items():
                    acc[m][k] += v
        for m in METHODS:
            rows.append({"seed": seed, "mode": mode, "method": m, **summarize(acc[m])})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description="Face-world benchmark PSNR split into changed / unchanged pixels")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--num-pairs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--threshold", type=float, default=0.03)
    p.add_argument("--mode", default="cross", choices=("self", "cross"))
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    rows = measure(a.seeds, a.num_pairs, a.batch_size, a.threshold, a.mode)
    cols = ("psnr_all", "psnr_changed", "psnr_unchanged", "changed_fraction", "error_share_changed")
    print(f"{'method':14s} {'seed':>4s} " + " ".join(f"{c:>20s}" for c in cols))
    for r in rows:
        print(f"{r['method']:14s} {r['seed']:4d} " + " ".join(f"{r[c]:20.4f}" for c in cols))
    print("\nmean over seeds")
    for m in METHODS:
        sel = [r for r in rows if r["method"] == m]
        print(f"{m:14s}      " + " ".join(f"{sum(r[c] for r in sel) / len(sel):20.4f}" for c in cols))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"threshold": a.threshold, "rows": rows}, indent=2))
        print(f"rows -> {a.out}")
    return rows


if __name__ == "__main__":
    main()
