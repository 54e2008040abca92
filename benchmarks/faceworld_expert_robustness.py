"""How well the face-world attribute expert reads degraded faces, and what it says about the generator's faces.

The attribute expert is both a training loss (DECA's place) and the reenactment benchmark's reader of landmarks,
pose and expression on generated faces. Generated faces are softer than renders and carry texture noise; an expert
that misreads such images turns its own error into the benchmark's landmark error. On held-out renders with exact
ground truth this script prints, for each expert file side by side:

* landmark error (``estimate_landmarks`` vs the true 68 points, pixels at 64 px), expression R^2 and yaw error on
  clean renders, renders blurred (Gaussian, standard deviation 0.5 and 1.0 px) and renders with additive Gaussian
  noise (standard deviation 0.03 and 0.06 of the [-1, 1] range);
* the same on the shipped generator's e4e reconstructions of those renders, against the renders' truth (the
  "inverted truth" row of the reenactment benchmark), for each encoder given (default: the shipped one).

An expert that no model was trained against (``train attributes --seed 7 --degrade 0.5``, say) is an independent
judge of an encoder trained with the shipped expert's terms::

    python benchmarks/faceworld_expert_robustness.py [--experts A.pt B.pt] [--encoders E1.pt E2.pt] [--n 300]
"""

from __future__ import annotations

import argparse
import time

import torch

DEGRADATIONS = ("clean", "blur 0.5", "blur 1.0", "noise 0.03", "noise 0.06")


def _condition(name: str, x: torch.Tensor, rng: torch.Generator, reconstruct: dict) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    if name == "clean":
        return x
    if name in reconstruct:
        return reconstruct[name](x)
    kind, value = name.split(" ", 1)
    if kind == "blur":
        return gaussian_blur(x, 7, float(value))
    return (x + float(value) * torch.randn(x.shape, generator=rng)).clamp(-1, 1)


@torch.no_grad()
def robustness(
    experts: list[str | None], n: int = 300, seed: int = 0, batch: int = 50, encoders: list[str | None] = (None,)
) -> dict[str, dict]:
    """``{expert: {condition: {"landmark_px", "expression_r2", "yaw_err_deg"}}}`` on ``n`` held-out renders;
    conditions: :data:`DEGRADATIONS` and ``e4e reconstruction (<encoder>)`` per encoder file."""
    from common.data import faceworld as fw
    from common.face.faceworld_experts import attribute_crop, estimate_landmarks, load_faceworld_attributes, r2_scores
    from common.metrics.face import landmark_pixel_error
    from common.stylegan2.faceworld_e4e import generator_path, load_faceworld_e4e
    from common.stylegan2.sample import load_any_generator

    g = load_any_generator(generator_path()).float().eval()
    reconstruct = {}
    for e in encoders:
        enc = load_faceworld_e4e(e, generator=g)
        reconstruct[f"e4e reconstruction ({e or 'shipped'})"] = lambda x, enc=enc: g.synthesis(
            enc(x), noise="const"
        ).clamp(-1, 1)
    conditions = (*DEGRADATIONS, *reconstruct)
    ds = fw.FaceWorldDataset("test", size=g.size, length=n, seed=seed)
    nets = {str(e or "shipped"): load_faceworld_attributes(e).eval() for e in experts}
    acc: dict[str, dict[str, dict[str, list]]] = {k: {c: {} for c in conditions} for k in nets}
    for start in range(0, n, batch):
        p = ds.params(list(range(start, min(n, start + batch))))
        x = fw.render(p["identity"], p["pose"], p["expression"], g.size)
        lm = fw.landmarks(p["identity"], p["pose"], p["expression"], g.size)
        for c in conditions:
            xc = _condition(c, x, torch.Generator().manual_seed(seed * 1000 + start), reconstruct)
            for k, net in nets.items():
                out = net(attribute_crop(xc, lm))
                rec = acc[k][c]
                rec.setdefault("lm", []).append(landmark_pixel_error(estimate_landmarks(net, xc), lm))
                rec.setdefault("exp", []).append(out["exp"])
                rec.setdefault("true_exp", []).append(p["expression"])
                rec.setdefault("yaw", []).append((out["angles"][:, 0] - p["pose"][:, 0]).abs())
    return {
        k: {
            c: {
                "landmark_px": torch.cat(r["lm"]).mean().item(),
                "expression_r2": r2_scores(torch.cat(r["exp"]), torch.cat(r["true_exp"])).mean().item(),
                "yaw_err_deg": torch.cat(r["yaw"]).mean().item(),
            }
            for c, r in per.items()
        }
        for k, per in acc.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experts", nargs="+", default=[None], help="attribute expert files (default: the shipped one)")
    ap.add_argument("--encoders", nargs="+", default=[None], help="face-world e4e files (default: the shipped one)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    res = robustness(args.experts, args.n, args.seed, encoders=args.encoders)
    names = list(res)
    print(f"attribute expert on {args.n} held-out renders (64 px): landmark px / expression R^2 / yaw error deg")
    print(f"{'condition':<44}" + "".join(f"  {k[-34:]:>34}" for k in names))
    for c in res[names[0]]:
        cells = [f"{m['landmark_px']:.2f} / {m['expression_r2']:.3f} / {m['yaw_err_deg']:.2f}" for m in
                 (res[k][c] for k in names)]  # fmt: skip
        print(f"{c[-44:]:<44}" + "".join(f"  {cell:>34}" for cell in cells))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
