"""Batched tensor versions of the ReSSL/CGH views (weak: crop + flip; strong: MoCo v2), for small images on CPU.

The per-image PIL pipeline of ``data.pretrain_transforms`` costs about 5 ms per 32 px image and pair of views on
one core, more than the tiny encoder of the CPU demo; these ops draw the same random parameters per image but
transform a whole batch at once (about 20x faster). They follow torchvision's definitions:

* ``RandomResizedCrop(size, scale, ratio=(3/4, 4/3))``: torchvision's 10 attempts then the whole-image fallback,
  the crop resampled bilinearly (``grid_sample``, ``align_corners=False``);
* ``RandomHorizontalFlip``; ``ColorJitter(b, c, s, h)`` applied with probability ``p`` (brightness, contrast,
  saturation and hue factors drawn per image, the four ops in one random order per batch, where torchvision
  draws one order per image); ``RandomGrayscale``; ``GaussianBlur(kernel, sigma)`` with probability ``p``
  (reflect padding), ``Normalize``.

Use :class:`BatchViews` on a uint8 batch ``[B, 3, H, W]``; randomness comes from torch's global generator (seeded
by ``seed_everything``) unless a generator is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
# the teacher's view: ReSSL's weak one, or a second strong one (an ablation)
TEACHER_VIEWS = ("weak", "strong")


def _rand(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def random_resized_crop_boxes(
    n: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    height: int = 32,
    width: int = 32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crop boxes ``[n, 4]`` = ``(top, left, h, w)`` in pixels, drawn as torchvision's ``RandomResizedCrop``.

    Ten attempts of (area fraction uniform in ``scale``, log aspect ratio uniform in ``log ratio``); the first that
    fits is used, else the whole image clipped to ``ratio`` (torchvision's fallback)."""
    area = height * width
    tries = 10
    target = area * _rand(n * tries, *scale, generator).view(n, tries)
    log_r = _rand(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    ar = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * ar))
    h = torch.round(torch.sqrt(target / ar))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    u_top, u_left = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    boxes = torch.empty(n, 4)
    for i in range(n):
        j = int(first[i])
        if j >= 0:
            hi, wi = float(h[i, j]), float(w[i, j])
            top = math.floor(float(u_top[i]) * (height - hi + 1))
            left = math.floor(float(u_left[i]) * (width - wi + 1))
        else:  # fallback: central crop of the whole image, aspect clipped to ratio
            in_ratio = width / height
            if in_ratio < ratio[0]:
                wi, hi = width, round(width / ratio[0])
            elif in_ratio > ratio[1]:
                hi, wi = height, round(height * ratio[1])
            else:
                wi, hi = width, height
            top, left = (height - hi) // 2, (width - wi) // 2
        boxes[i] = torch.tensor([top, left, hi, wi])
    return boxes


def crop_resize(x: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Resample pixel boxes ``[B, 4]`` (top, left, h, w) of ``x [B, C, H, W]`` to ``size x size``, bilinear;
    ``flip [B]`` (bool) mirrors those crops horizontally."""
    b, _, hgt, wid = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)
    # normalised coordinates (align_corners=False): pixel edge 0 -> -1, edge W -> +1
    cx = (left + w / 2) / wid * 2 - 1
    cy = (top + h / 2) / hgt * 2 - 1
    sx, sy = w / wid, h / hgt
    if flip is not None:
        sx = torch.where(flip.to(torch.bool), -sx, sx)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, (b, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: Tensor) -> Tensor:
    """``[B, 3, H, W]`` -> ``[B, 1, H, W]`` luminance (torchvision weights)."""
    r, g, b = x.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def _blend(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    return (f.view(-1, 1, 1, 1) * a + (1 - f.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    """Per-image factor ``f [B]``: ``clamp(f x)``."""
    return _blend(x, torch.zeros_like(x), f)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    """Per-image factor ``f [B]``: blend with the image's mean grey level."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), f)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    """Per-image factor ``f [B]``: blend with the grey image."""
    return _blend(x, grayscale(x).expand_as(x), f)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Per-image hue shift ``shift [B]`` in [-0.5, 0.5] (fraction of the hue circle), through HSV."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    i = torch.floor(h * 6.0)
    fpart = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * fpart), v * (1 - s * (1 - fpart))
    i = i.long() % 6
    sel = [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = torch.zeros_like(x)
    for k in range(6):
        out = torch.where((i == k).unsqueeze(1), sel[k], out)
    return out


def color_jitter(
    x: Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` on a batch (see module doc)."""
    n = x.shape[0]
    apply = torch.rand(n, generator=generator) < p
    fb = _rand(n, max(0.0, 1 - brightness), 1 + brightness, generator)
    fc = _rand(n, max(0.0, 1 - contrast), 1 + contrast, generator)
    fs = _rand(n, max(0.0, 1 - saturation), 1 + saturation, generator)
    fh = _rand(n, -hue, hue, generator)
    ops = [
        lambda y: adjust_brightness(y, fb),
        lambda y: adjust_contrast(y, fc),
        lambda y: adjust_saturation(y, fs),
        lambda y: adjust_hue(y, fh),
    ]
    y = x
    for k in torch.randperm(4, generator=generator).tolist():
        y = ops[k](y)
    return torch.where(apply.view(-1, 1, 1, 1), y, x)


def gaussian_blur(x: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image ``sigma [B]`` and reflect padding (torchvision's)."""
    b, c, h, w = x.shape
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].to(x.dtype)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, k]
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


class BatchViews:
    """ReSSL/CGH pretraining views of a uint8 batch: ``[weak, strong, *local]``, each ``[B, 3, size, size]`` float.

    weak: RandomResizedCrop(size, scale) + flip + Normalize (the teacher's view); strong (the student's):
    RandomResizedCrop(size, scale), ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale(0.2),
    GaussianBlur(kernel, sigma 0.1-2) with ``blur_prob``, flip, Normalize; ``local_crops`` adds strong views
    ``(size, min_scale, max_scale)`` (ReSSL multi-crop). ``teacher_view="strong"`` makes the first view a second
    strong one (MoCo v2's symmetric recipe; ReSSL's point is the weak one).
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: tuple[float, float] = (0.2, 1.0),
        blur_prob: float = 0.5,
        blur_kernel: int = 3,
        local_crops: Sequence[tuple[int, float, float]] = (),
        teacher_view: str = "weak",
    ) -> None:
        if teacher_view not in TEACHER_VIEWS:
            raise ValueError(f"BatchViews: teacher_view must be one of {TEACHER_VIEWS}, got {teacher_view!r}")
        self.teacher_view = teacher_view
        self.size, self.scale = size, tuple(scale)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.blur_prob, self.blur_kernel = blur_prob, blur_kernel
        self.local_crops = [(int(s), float(lo), float(hi)) for s, lo, hi in local_crops]

    def _crop_flip(self, x: Tensor, size: int, scale: tuple[float, float], g: torch.Generator | None) -> Tensor:
        n, _, h, w = x.shape
        boxes = random_resized_crop_boxes(n, scale, height=h, width=w, generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        return crop_resize(x, boxes, size, flip)

    def weak(self, x: Tensor, g: torch.Generator | None = None) -> Tensor:
        """Teacher view of a float batch in [0, 1]."""
        return (self._crop_flip(x, self.size, self.scale, g) - self.mean) / self.std

    def strong(self, x: Tensor, size: int | None = None, scale: tuple[float, float] | None = None, g=None) -> Tensor:
        """Student view (MoCo v2) of a float batch in [0, 1]."""
        y = self._crop_flip(x, size or self.size, scale or self.scale, g)
        y = color_jitter(y, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=g)
        grey = torch.rand(y.shape[0], generator=g) < 0.2
        y = torch.where(grey.view(-1, 1, 1, 1), grayscale(y).expand_as(y), y)
        blur = torch.rand(y.shape[0], generator=g) < self.blur_prob
        if blur.any():
            sigma = _rand(int(blur.sum()), 0.1, 2.0, g)
            y = y.clone()
            y[blur] = gaussian_blur(y[blur], self.blur_kernel, sigma)
        return (y - self.mean) / self.std

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """``images [B, 3, H, W]`` uint8 (or float in [0, 1]) -> ``[weak, strong, *local]``."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        first = self.weak(x, generator) if self.teacher_view == "weak" else self.strong(x, g=generator)
        views = [first, self.strong(x, g=generator)]
        views += [self.strong(x, s, (lo, hi), generator) for s, lo, hi in self.local_crops]
        return views
