"""Is a face-world generator's output made of faces? Distances to real renders in the experts' spaces.

    python -m projects.stylegan2.evaluate --generator runs/stylegan2/faceworld64/version_0/checkpoints/last.ckpt
    python -m projects.stylegan2.evaluate --generator pretrained/faceworld/faceworld_generator.pt --n 2000

Reference sets: ``n`` renders of the validation identities (A) and ``n`` of the disjoint test identities (B), at
the generator's resolution (cached like the training data). Reported:

* identity-space Fréchet distances (the face-world identity expert's embeddings): generator vs A, an untrained
  generator of the same architecture (seeded) vs A, and the floor A vs B; ``gap_closed = (untrained - generator) /
  (untrained - floor)`` (the issue's target: at least 0.9);
* pose and expression: the attribute expert's yaw/pitch/roll (degrees) and 8 expression coefficients of the
  generated faces against those of A, as per-dimension 1-D Wasserstein distances (mean |sorted a - sorted b|),
  with the same for B vs A as the floor; and a histogram figure of every dimension.

Generated images: ``z`` and noise drawn from ``seed``, no truncation. Writes ``<out>/faceworld_eval.json`` and
``<out>/faceworld_eval_histograms.png``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from common.stylegan2.checkpoints import infer_generator_config
from common.stylegan2.generator import Generator
from projects.stylegan2.data import load_faceworld_cache
from projects.stylegan2.metrics import frechet_distance_of

POSE = ("yaw", "pitch", "roll")


@torch.no_grad()
def generate(g: Generator, n: int, seed: int = 0, batch: int = 100) -> Tensor:
    """``n`` images ``[n, 3, S, S]`` in [-1, 1] from ``z`` and random noise drawn from ``seed`` (no truncation)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        z = torch.randn(b, g.style_dim, generator=gen)
        noise = [
            torch.randn(b, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), generator=gen) for i in range(g.num_layers)
        ]
        out.append(g([z], noise=noise)[0].clamp(-1, 1))
    return torch.cat(out)


@torch.no_grad()
def _map(fn: Callable[[Tensor], Tensor | dict], images: Tensor, batch: int = 200):
    parts = [fn(images[i : i + batch]) for i in range(0, images.shape[0], batch)]
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def wasserstein_1d(a: Tensor, b: Tensor) -> float:
    """W1 between two empirical 1-D distributions of equal size: mean |sorted a - sorted b|."""
    if a.shape != b.shape:
        raise ValueError(f"wasserstein_1d: equal sample counts needed, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a.double().sort().values - b.double().sort().values).abs().mean())


def attributes_of(expert, images: Tensor) -> Tensor:
    """``[N, 11]``: yaw, pitch, roll (degrees) and the 8 expression coefficients from the attribute expert."""
    from common.face.faceworld_experts import attribute_crop

    out = _map(lambda x: expert(attribute_crop(x)), images)
    return torch.cat([out["angles"], out["exp"]], 1)


def evaluate(
    g: Generator,
    identity_expert,
    attribute_expert,
    real_a: Tensor,
    real_b: Tensor,
    seed: int = 0,
) -> dict:
    """The distances of the module docstring for generator ``g`` and reference renders ``real_a``/``real_b``
    (``[n, 3, S, S]`` in [-1, 1]); experts as ``load_faceworld_identity()`` / ``load_faceworld_attributes()``."""
    from common.data.faceworld import EXPRESSION_NAMES

    n = real_a.shape[0]
    fake = generate(g, n, seed)
    torch.manual_seed(seed)
    untrained = Generator(**infer_generator_config(g.state_dict()), lr_mlp=g.lr_mlp).eval()
    blank = generate(untrained, n, seed)
    emb = {
        k: _map(identity_expert.embed_images, x) for k, x in (("a", real_a), ("b", real_b), ("g", fake), ("u", blank))
    }
    fd = {"generator": frechet_distance_of(emb["g"], emb["a"]), "untrained": frechet_distance_of(emb["u"], emb["a"]),
          "real_floor": frechet_distance_of(emb["b"], emb["a"])}  # fmt: skip
    gap = fd["untrained"] - fd["real_floor"]
    attrs = {k: attributes_of(attribute_expert, x) for k, x in (("a", real_a), ("b", real_b), ("g", fake))}
    names = [*POSE, *EXPRESSION_NAMES]
    w1 = {
        name: {"generator": wasserstein_1d(attrs["g"][:, j], attrs["a"][:, j]),
               "real_floor": wasserstein_1d(attrs["b"][:, j], attrs["a"][:, j])}
        for j, name in enumerate(names)
    }  # fmt: skip
    return {
        "n": n,
        "size": g.size,
        "fd_identity": fd,
        "gap_closed": (fd["untrained"] - fd["generator"]) / gap if gap > 0 else float("nan"),
        "wasserstein_1d": w1,
        "_attributes": {k: v for k, v in attrs.items()},
        "_names": names,
    }


def plot_histograms(result: dict, path: Path) -> Path:
    """One histogram per pose/expression dimension: real renders (A) and generated faces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, attrs = result["_names"], result["_attributes"]
    fig, axes = plt.subplots(2, 6, figsize=(18, 6))
    for ax, (j, name) in zip(axes.flat, enumerate(names)):
        a, g = attrs["a"][:, j].numpy(), attrs["g"][:, j].numpy()
        lo, hi = min(a.min(), g.min()), max(a.max(), g.max())
        ax.hist(a, bins=30, range=(lo, hi), alpha=0.5, density=True, label="real renders")
        ax.hist(g, bins=30, range=(lo, hi), alpha=0.5, density=True, label="generated")
        ax.set_title(f"{name}  W1 {result['wasserstein_1d'][name]['generator']:.3g}")
    axes.flat[-1].axis("off")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", required=True, help="rosinality .pt or a Lightning .ckpt of projects/stylegan2")
    ap.add_argument("--n", type=int, default=2000, help="images per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache_dir", default="data/faceworld_cache")
    ap.add_argument("--identity_weights", default=None)
    ap.add_argument("--attribute_weights", default=None)
    ap.add_argument("--out", default=None, help="folder for the JSON and the figure (default: beside the generator)")
    a = ap.parse_args(argv)
    from common.face.faceworld_experts import load_faceworld_attributes, load_faceworld_identity
    from common.stylegan2.sample import load_any_generator

    g = load_any_generator(a.generator)
    real_a = load_faceworld_cache(a.cache_dir, "val", g.size, a.n, a.seed).float().div(127.5).sub(1)
    real_b = load_faceworld_cache(a.cache_dir, "test", g.size, a.n, a.seed).float().div(127.5).sub(1)
    result = evaluate(g, load_faceworld_identity(a.identity_weights), load_faceworld_attributes(a.attribute_weights),
                      real_a, real_b, a.seed)  # fmt: skip
    out = Path(a.out) if a.out else Path(a.generator).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_histograms(result, out / "faceworld_eval_histograms.png")
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    (out / "faceworld_eval.json").write_text(json.dumps(public, indent=2))
    fd = public["fd_identity"]
    print(f"identity FD: generator {fd['generator']:.4f}, untrained {fd['untrained']:.4f}, real floor "
          f"{fd['real_floor']:.4f}; gap closed {public['gap_closed']:.3f}")  # fmt: skip
    print(f"{'dimension':<14} {'W1 generated':>13} {'W1 real floor':>14}")
    for name, d in public["wasserstein_1d"].items():
        print(f"{name:<14} {d['generator']:13.4f} {d['real_floor']:14.4f}")
    print(f"wrote {out / 'faceworld_eval.json'} and {fig}")
    return public


if __name__ == "__main__":
    main()
