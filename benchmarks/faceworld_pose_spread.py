"""How much head pose the face-world generator shows: the spread the reenactment methods can learn from.

StyleMask trains on pairs of random codes of the generator (the official recipe); HyperReenact on pairs of real
renders inverted by e4e. This script measures, with the attribute expert (the benchmark's pose reader), the
standard deviation of yaw, pitch and roll (degrees) of

* generated faces from random ``z`` at truncation 0.7 (StyleMask's training codes) and 1.0,
* held-out renders (the benchmark's drivers), and
* the generator's images of their e4e inversions (what a method editing the generator starts from)::

    python benchmarks/faceworld_pose_spread.py [--n 200]
"""

from __future__ import annotations

import argparse

import torch


@torch.no_grad()
def pose_spread(n: int = 200, seed: int = 0) -> dict[str, list[float]]:
    """``{set name: [std yaw, std pitch, std roll]}`` in degrees, read by the shipped attribute expert."""
    from common.data.faceworld import ReenactmentPairs
    from projects.stylemask.faceworld import load_trained

    module = load_trained()  # the shipped generator, e4e and experts, as the benchmark loads them

    def spread(images: torch.Tensor) -> list[float]:
        return [round(float(v), 2) for v in module.faces.coefficients(images)["angles"].std(0)]

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, module.generator.style_dim, generator=g)
    out = {}
    for psi in (0.7, 1.0):
        out[f"generated, truncation {psi}"] = spread(
            module.generator.synthesis(module.wplus_from_z(z, psi), noise="const")
        )
    pairs = ReenactmentPairs("test", int(module.generator.size), n, "cross", seed)
    renders = torch.stack([pairs[i]["driver"] for i in range(n)])
    out["held-out renders"] = spread(renders)
    out["e4e inversions of those renders"] = spread(
        module.generator.synthesis(module.to_wplus(renders, "image"), noise="const")
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description="Pose spread of face-world generated faces, renders and inversions")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    res = pose_spread(a.n, a.seed)
    print(f"{'images':36s} {'yaw std':>8s} {'pitch std':>10s} {'roll std':>9s}   (degrees, attribute expert)")
    for name, (y, pt, r) in res.items():
        print(f"{name:36s} {y:8.2f} {pt:10.2f} {r:9.2f}")
    return res


if __name__ == "__main__":
    main()
