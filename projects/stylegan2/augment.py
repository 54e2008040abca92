"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentation of every image the discriminator sees.

For small data sets: the same random transformations are applied to real and generated images in every
discriminator and generator step, and they are differentiable, so the generator learns the un-augmented
distribution. Policy ``"color,translation,cutout"`` (the paper's), each transformation drawn per sample:

* color: brightness ``+ U(-0.5, 0.5)``; saturation ``(x - mean_c) * U(0, 2) + mean_c``; contrast
  ``(x - mean_chw) * U(0.5, 1.5) + mean_chw``.
* translation: integer shift in ``[-r, r]`` pixels per axis, ``r = round(size / 8)``, zero fill.
* cutout: a zeroed square of side ``round(size / 2)`` centred at a uniformly drawn pixel (clipped at the borders).

All randomness comes from the ``generator`` passed in (on the images' device), so a seeded step is reproducible.
"""

from __future__ import annotations

import torch
from torch import Tensor

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); unknown names raise naming the allowed ones."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"DiffAugment policy: unknown {bad}; choose a comma-separated subset of {POLICIES}")
    return names


def _rand(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)


def color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random brightness, saturation and contrast per sample (differentiable)."""
    x = x + (_rand(x, generator) - 0.5)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (_rand(x, generator) * 2) + m
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * (_rand(x, generator) + 0.5) + m


def translation(x: Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> Tensor:
    """Shift each sample by an integer number of pixels in ``[-r, r]`` per axis (``r = int(size * ratio + 0.5)``),
    filling with zeros; a gather, so gradients flow to the kept pixels."""
    b, c, h, w = x.shape
    ry, rx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-ry, ry + 1, (b, 1, 1), generator=generator, device=x.device)
    tx = torch.randint(-rx, rx + 1, (b, 1, 1), generator=generator, device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1) + ty + 1  # +1: the zero border added below
    gx = torch.arange(w, device=x.device).view(1, 1, w) + tx + 1
    gy, gx = gy.clamp(0, h + 1).expand(b, h, w), gx.clamp(0, w + 1).expand(b, h, w)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])  # [B, C, H+2, W+2]
    flat = (gy * (w + 2) + gx).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, flat).view(b, c, h, w)


def cutout(x: Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Zero a square of side ``int(size * ratio + 0.5)`` per sample at a uniformly drawn centre (clipped)."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - sy % 2), (b, 1, 1), generator=generator, device=x.device)
    ox = torch.randint(0, w + (1 - sx % 2), (b, 1, 1), generator=generator, device=x.device)
    yy = torch.arange(h, device=x.device).view(1, h, 1) - (oy - sy // 2)
    xx = torch.arange(w, device=x.device).view(1, 1, w) - (ox - sx // 2)
    inside = (yy >= 0) & (yy < sy) & (xx >= 0) & (xx < sx)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(
    x: Tensor, policy: str | tuple[str, ...] = POLICIES, generator: torch.Generator | None = None
) -> Tensor:
    """Apply the transformations of ``policy`` in the order given (``[B, C, H, W]`` in, same shape out)."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        if name == "color":
            x = color(x, generator)
        elif name == "translation":
            x = translation(x, generator=generator)
        elif name == "cutout":
            x = cutout(x, generator=generator)
    return x.contiguous()
