"""Samples of a StyleGAN2 generator by seed, with truncation and style mixing (the web app and scripts).

A seed fixes one ``z ~ N(0, I)`` (``torch.Generator().manual_seed(seed)``), so the same seed gives the same face
on every machine. Truncation pulls ``w`` toward the generator's mean latent; style mixing takes the ``w`` of
``mix_seed`` from layer ``mix_from`` of W+ on (coarse layers from the row's seed, finer ones from ``mix_seed``),
as the StyleGAN papers' mixing figures. Noise is the generator's constant buffers, so outputs are deterministic.

    python -m common.stylegan2.sample --generator G.pt --seeds 0 1 2 3 --truncation 0.7 --out grid.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import Tensor

from common.stylegan2.checkpoints import (
    CheckpointError,
    infer_generator_config,
    load_generator,
    load_state_dict_checked,
)
from common.stylegan2.generator import Generator

# Where a Lightning checkpoint keeps a generator (first match wins): a StyleGAN2 training run's EMA generator,
# StyleMask's and HyperReenact's frozen generators (saved when they were not read from a file).
LIGHTNING_PREFIXES = ("g_ema.", "generator_ema.", "reenactor.generator.", "net.generator.", "generator.")


def load_any_generator(path: str | os.PathLike, lr_mlp: float = 0.01) -> Generator:
    """A generator in eval mode from a rosinality/NVIDIA file (``load_generator``) or a Lightning ``.ckpt`` that
    holds one under a prefix of ``LIGHTNING_PREFIXES``; anything else raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if path.suffix != ".ckpt":
        return load_generator(path, lr_mlp=lr_mlp)
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    for prefix in LIGHTNING_PREFIXES:
        sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if "input.input" in sub and "style.1.weight" in sub:
            g = Generator(**infer_generator_config(sub, f"{path} ({prefix}*)"), lr_mlp=lr_mlp)
            load_state_dict_checked(g, sub, f"{path} ({prefix}*)")
            return g.eval()
    raise CheckpointError(
        f"{path}: no StyleGAN2 generator in this checkpoint (looked for keys under {', '.join(LIGHTNING_PREFIXES)}; "
        "a generator read from a file during training is not saved in the checkpoint: pass that file instead)"
    )


def seed_z(seed: int, dim: int) -> Tensor:
    """The ``z [dim]`` of a seed."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(int(seed)))


def mean_w(g: Generator, samples: int = 4096, seed: int = 0) -> Tensor:
    """The truncation centre ``[1, style_dim]``: the file's ``latent_avg`` when it has one, else the mean of
    ``samples`` mapped z drawn from ``seed``."""
    if getattr(g, "latent_avg", None) is not None:
        return g.latent_avg
    return g.mean_latent(samples, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample(
    g: Generator,
    seeds: list[int],
    truncation: float = 1.0,
    mix_seed: int | None = None,
    mix_from: int | None = None,
    w_avg: Tensor | None = None,
) -> Tensor:
    """Images ``[len(seeds), 3, S, S]`` in [-1, 1] (clamped) of the seeds' z.

    ``truncation`` psi: ``w_avg + psi (w - w_avg)`` (``w_avg`` default ``mean_w(g)``). With ``mix_seed``, W+ rows
    ``mix_from .. n_latent-1`` take ``mix_seed``'s (truncated) w; ``mix_from`` must lie in ``1 .. n_latent-1``.
    """
    if not seeds:
        raise ValueError("give at least one seed")
    dev = next(g.parameters()).device
    z = torch.stack([seed_z(s, g.style_dim) for s in seeds]).to(dev)
    w = g.mapping(z)
    if truncation != 1.0:
        w = g.truncate(w, truncation, (mean_w(g) if w_avg is None else w_avg).to(dev))
    wplus = w[:, None].repeat(1, g.n_latent, 1)
    if mix_seed is not None:
        if mix_from is None or not 1 <= mix_from < g.n_latent:
            raise ValueError(f"mix_from must be in 1..{g.n_latent - 1} for this generator, got {mix_from}")
        w2 = g.mapping(seed_z(mix_seed, g.style_dim)[None].to(dev))
        if truncation != 1.0:
            w2 = g.truncate(w2, truncation, (mean_w(g) if w_avg is None else w_avg).to(dev))
        wplus[:, mix_from:] = w2[:, None]
    return g.synthesis(wplus, noise="const").clamp(-1, 1)


def to_uint8(images: Tensor) -> list:
    """``[B,3,H,W]`` in [-1,1] -> list of ``uint8 [H,W,3]`` numpy arrays."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return list(x.numpy())


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="StyleGAN2 samples by seed (truncation, style mixing) as one image row")
    p.add_argument("--generator", required=True, help="rosinality .pt, NVIDIA .pkl or a Lightning .ckpt")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--truncation", type=float, default=0.7)
    p.add_argument("--mix-seed", type=int, default=None)
    p.add_argument("--mix-from", type=int, default=None, help="first W+ row taken from --mix-seed")
    p.add_argument("--out", default="samples.png")
    a = p.parse_args(argv)
    import numpy as np
    from PIL import Image

    g = load_any_generator(a.generator)
    imgs = to_uint8(sample(g, a.seeds, a.truncation, a.mix_seed, a.mix_from))
    Image.fromarray(np.concatenate(imgs, axis=1)).save(a.out)
    print(f"[stylegan2] {len(imgs)} samples ({g.size} px) -> {a.out}")
    return Path(a.out)


if __name__ == "__main__":
    main()
