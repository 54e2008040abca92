"""What the face-world generator can show, beyond what its e4e finds: optimisation-based inversion of held-out renders.

The reenactment benchmark's "inverted truth" row is the e4e inversion of the exact answer: a ceiling of the encoder
and the generator together. This script separates them. Starting from e4e's W+ of ``n`` held-out renders, it
optimises W+ directly (Adam, lr 0.01, pixel MSE + 0.5 x the face-world perceptual distance; no landmark or
expression term) and prints, at the start and every ``--report`` steps: PSNR against the render, the attribute
expert's expression R^2 (crop from the true landmarks) and its landmark error (``estimate_landmarks`` vs the true
68 points, pixels at 64 px), and PSNR within 3 px of the true eye-and-brow and mouth landmarks (pixels only, no
network: a check on an encoder trained with the expert's own terms). If optimisation reaches landmarks and
expressions that e4e misses, the generator can show them and the encoder is the limit. With several
``--encoders`` each one's inversion is scored and the optimisation starts from the last::

    python benchmarks/faceworld_inversion_ceiling.py [--n 32] [--steps 300] [--encoders A.pt B.pt]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def near(points: torch.Tensor, size: int, radius: float = 3.0) -> torch.Tensor:
    """``[B,1,size,size]`` mask of the pixels whose centres lie within ``radius`` px of any of ``points [B,K,2]``."""
    c = torch.arange(size, dtype=points.dtype) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    d2 = (xx - points[..., 0, None, None]) ** 2 + (yy - points[..., 1, None, None]) ** 2
    return (d2 < radius**2).any(1, keepdim=True).to(points.dtype)


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB, range [-1, 1]) over the pixels of ``mask``: per image, as the benchmark's
    and e4e's PSNR (``faceworld_regions.py`` pools the squared error over all pairs instead)."""
    mse = ((a - b) ** 2 * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * a.shape[1])
    return (10 * torch.log10(4 / mse)).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="held-out renders")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--report", type=int, default=100)
    ap.add_argument("--encoders", nargs="+", default=[None], help="face-world e4e files (default: the registry's)")
    ap.add_argument("--attributes", default=None, help="attribute expert file (default: the registry's)")
    args = ap.parse_args()

    from common.data import faceworld as fw
    from common.face.faceworld_experts import (
        attribute_crop,
        estimate_landmarks,
        load_faceworld_attributes,
        load_faceworld_perceptual,
        r2_scores,
    )
    from common.metrics.face import landmark_pixel_error
    from common.stylegan2.faceworld_e4e import generator_path, load_faceworld_e4e
    from common.stylegan2.sample import load_any_generator

    g = load_any_generator(generator_path()).float().eval()
    for p in g.parameters():
        p.requires_grad_(False)
    attributes = load_faceworld_attributes(args.attributes)
    perceptual = load_faceworld_perceptual(attributes_path=args.attributes)
    params = fw.FaceWorldDataset("test", size=g.size, length=args.n, seed=0).params(list(range(args.n)))
    x = fw.render(params["identity"], params["pose"], params["expression"], g.size)
    lm = fw.landmarks(params["identity"], params["pose"], params["expression"], g.size)
    regions = {
        "all": torch.ones(args.n, 1, g.size, g.size),
        "eyes": near(lm[:, [*range(17, 27), *range(36, 48)]], g.size),
        "mouth": near(lm[:, 48:68], g.size),
    }

    @torch.no_grad()
    def report(label: str, rec: torch.Tensor) -> None:
        rec = rec.clamp(-1, 1)
        psnr = [masked_psnr(rec, x, m) for m in regions.values()]
        r2 = r2_scores(attributes(attribute_crop(rec, lm))["exp"], params["expression"]).mean().item()
        px = landmark_pixel_error(estimate_landmarks(attributes, rec), lm).mean().item()
        print(f"{label[-48:]:<48}" + "".join(f"{v:9.2f}" for v in psnr) + f"{r2:12.3f}{px:10.2f}", flush=True)

    print(f"{args.n} held-out renders at {g.size} px; W+ optimised from the last encoder's codes")
    print(f"{'':<48}{'PSNR dB':>9}{'eyes dB':>9}{'mouth dB':>9}{'expr R^2':>12}{'lm px':>10}")
    report("renders (the expert's own error)", x)
    with torch.no_grad():
        for e in args.encoders:
            enc = load_faceworld_e4e(e, generator=g)
            w0 = enc(x)
            report(f"e4e: {e or 'shipped'}", g.synthesis(w0, noise="const"))
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.01)
    t0 = time.time()
    for step in range(args.steps + 1):
        rec = g.synthesis(w, noise="const")
        if step % args.report == 0 and step > 0:
            report(f"optimised, {step} steps ({time.time() - t0:.0f} s)", rec.detach())
        if step == args.steps:
            break
        loss = F.mse_loss(rec, x) + 0.5 * perceptual(rec, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
