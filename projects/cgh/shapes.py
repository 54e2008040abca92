"""Procedural shapes: a CPU-sized image set where the nuisances are exactly what SSL augmentations remove.

Ten shape classes (:data:`CLASSES`), every image a new instance: the class fixes the outline family, and each
instance draws its own outline parameters (star depth, ring thickness, crescent bite, arm widths, aspect
ratio), rotation, size and position, an object colour, a two-colour background gradient and a shading
direction. The label is the shape alone; colour, position and scale are nuisances that the standard crop /
colour-jitter / grey-scale augmentations of MoCo v2 and ReSSL remove. In the original style (``"shapes"``) they
do not hide the shape from pixel distances as much as intended: raw-pixel kNN (k 20) reaches 0.55 on the default
splits (projects/cgh/README.md), the objects being large and near the centre.

The style ``"shapes_hard"`` (:data:`STYLES`) keeps the classes and outlines and makes the nuisances those the
views undo: objects of radius 0.25-0.5 of the half image anywhere in the frame (the crops' translation and
scale), mirrored half the time (the flip), one-colour backgrounds and colours drawn by MoCo v2's colour jitter and
grey-scale from one object and one background hue (the colour views), light-on-dark or dark-on-light.

Nothing is downloaded: :func:`render_shapes` draws the images from a seeded ``torch.Generator`` with signed
distance functions, 2x supersampled and box-filtered (about 1 s per 1,000 images of 32 px on one core). The
same ``(split, seed, n, size, style)`` always gives the same uint8 images; the train and test splits use different
random streams, so no instance is shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

CLASSES = ("circle", "triangle", "square", "star", "plus", "ring", "crescent", "arrow", "ell", "half_disk")
NUM_CLASSES = len(CLASSES)
SPLIT_SEEDS = {"train": 0, "test": 1}
DEFAULT_SIZES = {"train": 5000, "test": 2000}
MAX_ROTATION = 30.0  # degrees either way: the classes stay upright families (no augmentation undoes a rotation)


def _box(px: Tensor, py: Tensor, hx: Tensor | float, hy: Tensor | float) -> Tensor:
    """Signed distance to an axis-aligned box of half sizes (hx, hy) centred at the origin."""
    qx, qy = px.abs() - hx, py.abs() - hy
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _regular_polygon(px: Tensor, py: Tensor, n: int, radius: float) -> Tensor:
    """Approximate signed distance (exact along the edge normals) to a regular n-gon with one vertex up."""
    apothem = radius * math.cos(math.pi / n)
    d = None
    for i in range(n):
        a = math.pi / 2 + math.pi / n + 2 * math.pi * i / n  # edge normal directions
        e = px * math.cos(a) + py * math.sin(a) - apothem
        d = e if d is None else torch.maximum(d, e)
    return d


def _sdf(cls: int, px: Tensor, py: Tensor, p: Tensor) -> Tensor:
    """Signed distance (object units, outline of size about 1) of class ``cls``; ``p [N, 1, 1]`` its own
    per-instance outline parameter in [0, 1]."""
    r = torch.sqrt(px**2 + py**2)
    name = CLASSES[cls]
    if name == "circle":
        return r - 0.95
    if name == "triangle":
        return _regular_polygon(px, py, 3, 1.2)
    if name == "square":
        return _box(px, py, 0.8, 0.8)
    if name == "star":  # five points; inner radius 0.38-0.55 of the outer one
        inner = 0.38 + 0.17 * p
        theta = torch.atan2(px, py)  # 0 at the top point
        sector = 2 * math.pi / 5
        t = ((theta % sector) / sector - 0.5).abs() * 2  # 1 at a point, 0 between two points
        boundary = inner * 1.15 + (1.15 - inner * 1.15) * t
        return (r - boundary) * 0.6
    if name == "plus":  # arm half-width 0.22-0.36
        w = 0.22 + 0.14 * p
        return torch.minimum(_box(px, py, 1.0, w), _box(px, py, w, 1.0))
    if name == "ring":  # thickness 0.28-0.45 of the radius
        t = 0.28 + 0.17 * p
        return (r - (1.0 - t / 2)).abs() - t / 2
    if name == "crescent":  # bite offset 0.35-0.6
        off = 0.35 + 0.25 * p
        bite = torch.sqrt((px - off) ** 2 + (py - 0.1) ** 2) - 0.85
        return torch.maximum(r - 1.0, -bite)
    if name == "arrow":  # shaft half-width 0.15-0.25, head of half-width 0.6 pointing right
        w = 0.15 + 0.1 * p
        shaft = _box(px + 0.35, py, 0.6, w)
        head = torch.maximum(torch.maximum(-(px - 0.1), (px - 1.0) * 0.56 + py.abs() * 0.83), py.abs() - 0.7)
        return torch.minimum(shaft, head)
    if name == "ell":  # two arms of half-width 0.2-0.32
        w = 0.2 + 0.12 * p
        vertical = _box(px + 0.55 - w, py, w, 0.95)
        horizontal = _box(px, py + 0.95 - w, 0.55 + 0.0 * w, w)
        return torch.minimum(vertical, horizontal)
    if name == "half_disk":
        return torch.maximum(r - 1.05, -(py + 0.3))
    raise ValueError(f"unknown shape class {cls}")


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """``[N]`` each in [0, 1] -> ``[N, 3]`` RGB in [0, 1]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


@dataclass(frozen=True)
class ShapeStyle:
    """How the nuisances of one shapes data set are drawn (the classes and outlines are the same in every style).

    Args:
        scale: range of the outline radius as a fraction of the half image (uniform); the centre is uniform
            wherever the outline stays inside the frame, so smaller objects also move further.
        colours: ``"wide"``: object hue anywhere, saturation 0.3-1, background two hues of saturation 0-0.8
            (the original set); ``"jitter"``: one object hue and one background hue for all images, then the
            whole image goes through MoCo v2's colour jitter (brightness, contrast, saturation 0.4, hue 0.1,
            each times ``jitter``, applied with probability ``jitter_p``) and grey-scale with probability
            ``grey_p``: the colour differences between instances are those the SSL views are trained to ignore.
        jitter, jitter_p, grey_p: strength and probabilities of the ``"jitter"`` colours.
        polarity: light object on dark background or the reverse, half each (``False``: always light object).
        gradient: the background is a two-colour linear gradient (``False``: one colour).
        shade: largest amplitude of the object's linear shading.
        noise: standard deviation of Gaussian pixel noise (0-1 scale) added after rendering.
        inside: keep the whole outline inside the frame (the original set lets large, rotated or stretched
            outlines touch the border and lose a sliver).
        mirror: half the outlines are mirrored left-right (as the views' horizontal flip does).
        shift: the centre's range as a fraction of the room the outline leaves (1: anywhere it fits, 0: centred).
        outline: draw only a stroke of this width (fraction of the half image) along the outline (0: filled).
        grid: ``g > 1`` draws objects of the image's class on a grid of cells of side ``1 / g`` of the image,
            shifted by a random phase (so ``(g + 1) x (g + 1)`` cells cover the frame and the border cuts some
            objects), each with its own outline parameter, rotation, aspect, mirroring, size (``scale`` is then a
            fraction of the cell's half side) and position inside its cell; ``shift`` and ``inside`` do not apply.
        keep: probability that a cell holds an object (``grid > 1``; at least one cell always does).
    """

    scale: tuple[float, float] = (0.45, 0.8)
    colours: str = "wide"
    jitter: float = 1.0
    jitter_p: float = 1.0
    grey_p: float = 0.2
    polarity: bool = True
    gradient: bool = True
    shade: float = 0.35
    noise: float = 0.0
    inside: bool = False
    mirror: bool = False
    shift: float = 1.0
    outline: float = 0.0
    grid: int = 1
    keep: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0.1 <= lo <= hi <= 0.9:
            raise ValueError(f"ShapeStyle: scale must satisfy 0.1 <= lo <= hi <= 0.9, got {self.scale}")
        if self.colours not in ("wide", "jitter"):
            raise ValueError(f"ShapeStyle: colours must be 'wide' or 'jitter', got {self.colours!r}")
        for name in ("jitter_p", "grey_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ShapeStyle: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.jitter <= 2.5:
            raise ValueError(f"ShapeStyle: jitter must be in [0, 2.5], got {self.jitter}")
        if self.outline < 0:
            raise ValueError(f"ShapeStyle: outline must be >= 0, got {self.outline}")
        if not 0.0 <= self.shift <= 1.0:
            raise ValueError(f"ShapeStyle: shift must be in [0, 1], got {self.shift}")
        if not 1 <= self.grid <= 4:
            raise ValueError(f"ShapeStyle: grid must be in 1..4, got {self.grid}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"ShapeStyle: keep must be in (0, 1], got {self.keep}")
        if self.shade < 0 or self.noise < 0:
            raise ValueError(f"ShapeStyle: shade and noise must be >= 0, got {self.shade}, {self.noise}")


STYLES: dict[str, ShapeStyle] = {
    "shapes": ShapeStyle(),
    "shapes_hard": ShapeStyle(scale=(0.25, 0.5), colours="jitter", gradient=False, inside=True, mirror=True),
    "shapes_many": ShapeStyle(scale=(0.5, 0.9), colours="jitter", gradient=False, mirror=True, grid=2, keep=0.6),
}


def _grey(x: Tensor) -> Tensor:
    from projects.cgh.augment import grayscale

    return grayscale(x)


def _jitter_colours(x: Tensor, style: ShapeStyle, g: torch.Generator) -> Tensor:
    """MoCo v2 colour jitter (times ``style.jitter``) and grey-scale on rendered images in [0, 1], in chunks of
    64 so that the order of the four jitter ops varies (the batched op draws one order per call)."""
    from projects.cgh.augment import color_jitter

    j = style.jitter
    out = torch.empty_like(x)
    for i in range(0, len(x), 64):
        out[i : i + 64] = color_jitter(x[i : i + 64], 0.4 * j, 0.4 * j, 0.4 * j, min(0.5, 0.1 * j), style.jitter_p, g)
    grey = torch.rand(len(x), generator=g) < style.grey_p
    return torch.where(grey[:, None, None, None], _grey(out).expand_as(out), out)


def _object_sdf(
    cls: int,
    gx: Tensor,
    gy: Tensor,
    cx: Tensor,
    cy: Tensor,
    scale: Tensor,
    angle: Tensor,
    aspect: Tensor,
    mirror: Tensor,
    param: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Signed distance (image units, approximately) to one outline of class ``cls`` centred at ``(cx, cy)`` with
    radius ``scale``, rotated by ``angle``, stretched by ``aspect`` and mirrored by ``mirror`` (+-1), at the image
    coordinates ``gx, gy``; also the object coordinates ``(lx, ly)`` (for the shading). Per-instance values are
    ``[m, 1, 1]``, coordinates ``[1, s, s]``; results ``[m, s, s]``."""
    dx, dy = gx - cx, gy - cy
    ca, sa = torch.cos(angle), torch.sin(angle)
    lx = (ca * dx + sa * dy) / (scale * aspect.sqrt()) * mirror
    ly = (-sa * dx + ca * dy) / (scale / aspect.sqrt())
    return _sdf(cls, lx, ly, param) * scale, lx, ly


def _grid_objects(n: int, style: ShapeStyle, g: torch.Generator) -> dict[str, Tensor]:
    """Per-cell draws of a ``grid`` style, ``[n, (grid + 1) ** 2]`` each (drawn after every other draw, so the
    streams of the one-object styles are unchanged)."""
    k = (style.grid + 1) ** 2

    def u(lo: float = 0.0, hi: float = 1.0) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, k, generator=g)

    scale = u(*style.scale)  # fraction of the cell's half side
    room = (0.95 - 1.2 * scale).clamp(min=0)  # the centre moves as far as the outline stays in the cell
    keep = torch.rand(n, k, generator=g) < style.keep
    # never an empty image: one cell whose centre stays inside the frame for any phase holds an object
    inner = torch.tensor([i * (style.grid + 1) + j for i in range(1, style.grid) for j in range(1, style.grid)])
    keep[torch.arange(n), inner[torch.randint(len(inner), (n,), generator=g)]] = True
    mirror = torch.where(torch.rand(n, k, generator=g) < 0.5, -1.0, 1.0) if style.mirror else torch.ones(n, k)
    return {
        "scale": scale,
        "angle": u(-MAX_ROTATION, MAX_ROTATION) * math.pi / 180,
        "aspect": torch.exp(u(-0.2, 0.2)),
        "dx": u(-1, 1) * room,
        "dy": u(-1, 1) * room,
        "param": u(),
        "phase_x": u()[:, :1].expand(n, k),
        "phase_y": u()[:, :1].expand(n, k),
        "keep": keep,
        "mirror": mirror,
    }


def _grid_sdf(cls: int, gx: Tensor, gy: Tensor, cells: dict[str, Tensor], grid: int) -> tuple[Tensor, Tensor, Tensor]:
    """Union (minimum) of the signed distances of the kept cells' objects, ``[m, s, s]`` in image units, and the
    image coordinates ``gx, gy`` broadcast to it (the shading runs across the whole image)."""
    half = 1.0 / grid
    d = None
    for i in range(grid + 1):
        for j in range(grid + 1):
            c = i * (grid + 1) + j
            v = {k: t[:, c, None, None] for k, t in cells.items()}
            cx = -1 + (2 * j + 1) * half + v["dx"] * half - 2 * half * v["phase_x"]
            cy = 1 - (2 * i + 1) * half + v["dy"] * half + 2 * half * v["phase_y"]
            dc, _, _ = _object_sdf(
                cls, gx, gy, cx, cy, v["scale"] * half, v["angle"], v["aspect"], v["mirror"], v["param"]
            )
            dc = torch.where(v["keep"], dc, torch.full_like(dc, 10.0))
            d = dc if d is None else torch.minimum(d, dc)
    return d, gx.expand_as(d), gy.expand_as(d)


@lru_cache(maxsize=8)
def render_shapes(
    n: int, size: int = 32, seed: int = 0, supersample: int = 2, style: str | ShapeStyle = "shapes"
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random instances: ``(images [n, size, size, 3] uint8, labels [n] int64)``, balanced classes
    (label ``i % 10`` before a seeded shuffle). ``style``: a :class:`ShapeStyle` or a name of :data:`STYLES`.
    Deterministic in ``(n, size, seed, supersample, style)``; cached, and the arrays are read-only (the cache
    hands the same arrays to every caller). The default style draws the same bytes as before styles existed."""
    if n < 1 or size < 8 or supersample < 1:
        raise ValueError(f"render_shapes: need n >= 1, size >= 8, supersample >= 1; got {n}, {size}, {supersample}")
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(f"render_shapes: unknown style {style!r}; choose from {sorted(STYLES)}")
        style = STYLES[style]
    if not isinstance(style, ShapeStyle):
        raise TypeError(f"render_shapes: style must be a ShapeStyle or a name, got {type(style).__name__}")
    g = torch.Generator().manual_seed(int(seed) * 7919 + 12345)

    def u(*shape: int, lo: float = 0.0, hi: float = 1.0) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    labels = torch.arange(n) % NUM_CLASSES
    labels = labels[torch.randperm(n, generator=g)]
    scale = u(n, lo=style.scale[0], hi=style.scale[1])  # outline radius as a fraction of the half image
    angle = u(n, lo=-MAX_ROTATION, hi=MAX_ROTATION) * math.pi / 180
    aspect = torch.exp(u(n, lo=-0.2, hi=0.2))
    cx, cy = (u(n, lo=-1, hi=1) * (0.95 - scale)), (u(n, lo=-1, hi=1) * (0.95 - scale))
    param = u(n)
    # colours: object and background far apart in value (either dark on light or light on dark)
    light_obj = torch.rand(n, generator=g) < 0.5
    v_hi, v_lo = u(n, lo=0.65, hi=1.0), u(n, lo=0.05, hi=0.35)
    obj = _hsv_to_rgb(u(n), u(n, lo=0.3, hi=1.0), torch.where(light_obj, v_hi, v_lo))
    bg_v = torch.where(light_obj, v_lo, v_hi)
    bg_a = _hsv_to_rgb(u(n), u(n, hi=0.8), bg_v)
    bg_b = _hsv_to_rgb(u(n), u(n, hi=0.8), (bg_v + u(n, lo=-0.15, hi=0.15)).clamp(0, 1))
    grad_dir, shade_dir = u(n, hi=2 * math.pi), u(n, hi=2 * math.pi)
    shade_amp = u(n, lo=0.0, hi=0.35)
    # every style makes the draws above (so the original style's stream is unchanged); the others adjust them
    if style.inside:  # the same draws, rescaled so that the whole outline (extent up to ~1.2 radii) stays inside
        room = (0.98 - 1.2 * scale).clamp(min=0) / (0.95 - scale)
        cx, cy = cx * room, cy * room
    cx, cy = cx * style.shift, cy * style.shift
    if not style.polarity:
        light_obj = torch.ones_like(light_obj)
    if style.colours == "jitter":  # one object hue and one background hue; the jitter after rendering varies them
        hue_o, hue_b = torch.full((n,), 0.08), torch.full((n,), 0.58)
        v_hi, v_lo = 0.8 + (v_hi - 0.65) * (0.2 / 0.35), 0.05 + (v_lo - 0.05) * (0.25 / 0.3)  # wider gap:
        # the jitter's contrast and brightness (down to 0.6 each) and grey-scale must leave the object visible
        obj = _hsv_to_rgb(hue_o, torch.full((n,), 0.6), torch.where(light_obj, v_hi, v_lo))
        bg_a = _hsv_to_rgb(hue_b, torch.full((n,), 0.4), torch.where(light_obj, v_lo, v_hi))
    elif not style.polarity:
        obj = _hsv_to_rgb(u(n), u(n, lo=0.3, hi=1.0), v_hi)
        bg_a = _hsv_to_rgb(u(n), u(n, hi=0.8), v_lo)
    if not style.gradient:
        bg_b = bg_a
    shade_amp = shade_amp * (style.shade / 0.35)
    mirror = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if style.mirror else torch.ones(n)
    if style.grid > 1:
        cells = _grid_objects(n, style, g)
    objects = {"cx": cx, "cy": cy, "scale": scale, "angle": angle, "aspect": aspect, "mirror": mirror, "param": param}

    s = size * supersample
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    gy, gx = torch.meshgrid(-coords, coords, indexing="ij")  # y up
    gx, gy = gx[None], gy[None]
    out = torch.empty(n, 3, size, size)
    pixel = 2.0 / s
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            continue
        if style.grid > 1:
            d, lx, ly = _grid_sdf(c, gx, gy, {k: v[idx] for k, v in cells.items()}, style.grid)
        else:
            one = {k: v[idx, None, None] for k, v in objects.items()}
            d, lx, ly = _object_sdf(c, gx, gy, **one)
        if style.outline > 0:  # a stroke of width `outline` (fraction of the half image) along the outline
            d = d.abs() - style.outline / 2
        alpha = (0.5 - d / pixel).clamp(0, 1)[:, None]  # [m, 1, s, s]
        t = ((gx * torch.cos(grad_dir[idx, None, None]) + gy * torch.sin(grad_dir[idx, None, None])) + 1) / 2
        bg = bg_a[idx, :, None, None] * (1 - t[:, None]) + bg_b[idx, :, None, None] * t[:, None]
        shade_t = lx * torch.cos(shade_dir[idx, None, None]) + ly * torch.sin(shade_dir[idx, None, None])
        shade = 1 + shade_amp[idx, None, None] * shade_t.clamp(-1, 1)
        fg = (obj[idx, :, None, None] * shade[:, None]).clamp(0, 1)
        img = fg * alpha + bg * (1 - alpha)
        out[idx] = torch.nn.functional.avg_pool2d(img, supersample) if supersample > 1 else img
    if style.colours == "jitter":
        out = _jitter_colours(out.clamp(0, 1), style, g)
    if style.noise > 0:
        out = out + style.noise * torch.randn(out.shape, generator=g)
    images = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    labels_np = labels.numpy().astype(np.int64)
    images.setflags(write=False)
    labels_np.setflags(write=False)
    return images, labels_np


class ProceduralShapes(Dataset):
    """Split ``"train"`` or ``"test"`` of the procedural shapes. Item: ``(transform(PIL image), label, index)``.

    Args:
        split: ``"train"`` (default 5,000 images) or ``"test"`` (2,000), drawn from different seeds.
        size: image side in pixels.
        n: number of images (default per split: :data:`DEFAULT_SIZES`).
        seed: world seed; split ``s`` uses ``seed * 100 + SPLIT_SEEDS[s]``.
        transform: applied to the PIL RGB image (None: the PIL image itself).
        style: a name of :data:`STYLES` (``"shapes"``: the original set) or a :class:`ShapeStyle`.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 32,
        n: int | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        style: str | ShapeStyle = "shapes",
    ) -> None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"ProceduralShapes: split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
        self.split, self.size = split, size
        self.images, self.targets = render_shapes(
            n or DEFAULT_SIZES[split], size, seed * 100 + SPLIT_SEEDS[split], style=style
        )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.images[index])
        return (self.transform(img) if self.transform else img), int(self.targets[index]), index
