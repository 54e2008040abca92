"""The face world: a procedural face domain with exact ground truth (identity, head pose, expression, landmarks).

``render(identity, pose, expression, size)`` is a pure, deterministic, batched torch function. Its output for
``(identity of A, pose and expression of B)`` is the exact answer to "reenact A with B's motion", which no real data
set has; every face result of the GAN papers can be scored against it.

Model space (also the image plane): x right, y up, z toward the viewer; the image spans [-1, 1] in x and y with the
face aligned like FFHQ (head centred, eyes near 0.47 and mouth near 0.75 of the height, the chin near 0.88). The head
is an ellipsoid rotated by ``R = euler_to_rotation_matrix(yaw, pitch, roll)`` (the convention of
``common.face.flame``, so DECA-style axis-angle pose round-trips through ``axis_angle_to_euler``) about its centre,
seen by an orthographic camera along -z. Rendering casts one ray per (super)sample against the head, the hair volume,
the ears and the two nose ellipsoids; eyes, brows, mouth, hair line and folds are painted on the head surface in
head-local coordinates, so they foreshorten and move with the head. Shading is Lambertian under a fixed light.
Antialiasing: soft edges one sample wide plus ``supersample``-fold supersampling.

Parameters (all float tensors, batch first):

* identity ``[B, IDENTITY_DIM]`` in [0, 1]: the first ``SHAPE_DIM`` entries are geometry (:data:`SHAPE_PARAMS`, the
  part a landmark model needs: DECA's "shape"), the rest appearance (:data:`TEXTURE_PARAMS`: colours; "tex").
  ``identity_params(i)`` gives identity number ``i`` of the world; :data:`SPLITS` are disjoint identity ranges.
* pose ``[B, 3]``: yaw, pitch, roll in degrees.
* expression ``[B, 8]``: :data:`EXPRESSION_NAMES`, each in [0, 1] except ``eye_open`` in [-1, 1] (-1 closed, 0
  neutral, 1 wide open). The seven DFEW classes are combinations (:data:`DFEW_PROTOTYPES`).

``landmarks(...)`` gives the 68-point iBUG layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) in
pixels; ``landmarks3d_model`` the same points (and a grid of surface points) in model space, differentiable in all
parameters: the face world's FLAME.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from common.face.flame import euler_to_rotation_matrix

# ------------------------------------------------------------------------------------------------ parameters
# (name, low, high): identity entry u in [0, 1] means low + (high - low) * u. Lengths are in model units
# (the image is 2 wide); head-local coordinates are relative to the head centre, before rotation.
SHAPE_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("head_w", 0.53, 0.63),  # ellipsoid half-axes
    ("head_h", 0.80, 0.90),
    ("head_d", 0.55, 0.65),
    ("jaw_w", 0.72, 0.98),  # jaw width as a fraction of head_w
    ("chin", 0.80, 0.90),  # chin depth below the centre, fraction of head_h
    ("eye_sep", 0.20, 0.26),  # half the distance between the eye centres
    ("eye_y", 0.02, 0.10),
    ("eye_w", 0.085, 0.115),  # half width
    ("eye_h", 0.040, 0.060),  # upper-lid height at neutral
    ("brow_gap", 0.11, 0.16),
    ("brow_thick", 0.022, 0.042),
    ("brow_len", 0.09, 0.13),  # half length
    ("nose_len", 0.27, 0.35),  # eye line to the nose bottom
    ("nose_w", 0.050, 0.080),
    ("mouth_gap", 0.09, 0.14),  # nose bottom to the mouth line
    ("mouth_w", 0.13, 0.19),  # half width
    ("lip_thick", 0.026, 0.042),
    ("hairline", 0.38, 0.62),
    ("hair_len", 0.0, 1.0),  # 0 short, 1 to the shoulders
    ("hair_volume", 0.0, 1.0),
)
TEXTURE_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("skin_tone", 0.0, 1.0),
    ("skin_warmth", 0.0, 1.0),
    ("hair_light", 0.0, 1.0),
    ("hair_red", 0.0, 1.0),
    ("iris", 0.0, 1.0),
    ("lip_red", 0.0, 1.0),
    ("bg_r", 0.0, 1.0),
    ("bg_g", 0.0, 1.0),
    ("bg_b", 0.0, 1.0),
    ("cloth_r", 0.0, 1.0),
    ("cloth_g", 0.0, 1.0),
    ("cloth_b", 0.0, 1.0),
)
SHAPE_DIM = len(SHAPE_PARAMS)
TEXTURE_DIM = len(TEXTURE_PARAMS)
IDENTITY_DIM = SHAPE_DIM + TEXTURE_DIM
IDENTITY_NAMES = tuple(p[0] for p in SHAPE_PARAMS + TEXTURE_PARAMS)

EXPRESSION_NAMES = (
    "smile",
    "mouth_open",
    "brow_raise",
    "eye_open",
    "frown",
    "brow_furrow",
    "nose_wrinkle",
    "lip_stretch",
)
EXPRESSION_DIM = len(EXPRESSION_NAMES)
EXPRESSION_LOW = torch.tensor([0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0])
EXPRESSION_HIGH = torch.ones(EXPRESSION_DIM)
POSE_NAMES = ("yaw", "pitch", "roll")
# Pose distribution: normal with these standard deviations (degrees), clipped to +-POSE_LIMIT.
POSE_STD = (15.0, 9.0, 7.0)
POSE_LIMIT = (40.0, 25.0, 20.0)
# Jaw rotation (radians, about x) at mouth_open = 1: the DECA-style jaw pose of the attribute interface.
JAW_ANGLE = 0.35

# The seven DFEW classes (0 happiness, 1 sadness, 2 neutral, 3 anger, 4 surprise, 5 disgust, 6 fear) at full
# intensity, in EXPRESSION_NAMES order.
DFEW_CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
DFEW_PROTOTYPES = torch.tensor(
    [
        [1.0, 0.25, 0.1, -0.35, 0.0, 0.0, 0.0, 0.1],
        [0.0, 0.0, 0.45, -0.35, 0.9, 0.55, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.25, 0.35, 1.0, 0.2, 0.0],
        [0.0, 0.8, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.1, 0.0, -0.45, 0.5, 0.45, 1.0, 0.0],
        [0.0, 0.35, 0.8, 0.9, 0.2, 0.6, 0.0, 1.0],
    ]
)

# Disjoint identity-number ranges of the splits.
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "val": range(100_000, 101_000),
    "test": range(101_000, 102_000),
}

# 68-point layout: indices of each part.
JAW, BROWS, NOSE, EYES, MOUTH = range(0, 17), range(17, 27), range(27, 36), range(36, 48), range(48, 68)

_LIGHT = (-0.35, 0.45, 1.0)


def _idx(name: str) -> int:
    return IDENTITY_NAMES.index(name)


def physical(identity: Tensor, name: str) -> Tensor:
    """The physical value ``[B]`` of identity parameter ``name`` (``identity [B, IDENTITY_DIM]`` in [0, 1])."""
    i = _idx(name)
    lo, hi = (SHAPE_PARAMS + TEXTURE_PARAMS)[i][1:]
    return lo + (hi - lo) * identity[:, i]


def _check_params(identity: Tensor, pose: Tensor, expression: Tensor) -> int:
    for name, t, n in (("identity", identity, IDENTITY_DIM), ("pose", pose, 3), ("expression", expression, 8)):
        if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[1] != n:
            raise ValueError(f"faceworld: {name} must be a tensor [B, {n}], got {getattr(t, 'shape', type(t))}")
    b = identity.shape[0]
    if pose.shape[0] != b or expression.shape[0] != b:
        raise ValueError(
            f"faceworld: batch sizes differ: identity {identity.shape[0]}, pose {pose.shape[0]}, "
            f"expression {expression.shape[0]}"
        )
    return b


# ------------------------------------------------------------------------------------------------ sampling
def identity_params(indices: int | Sequence[int] | Tensor, seed: int = 0) -> Tensor:
    """Identity number(s) ``i`` of the world -> ``[N, IDENTITY_DIM]`` in [0, 1] (deterministic in ``(seed, i)``)."""
    idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if (idx < 0).any():
        raise ValueError("faceworld: identity numbers must be non-negative")
    # A counter-based hash (splitmix64-style) per (seed, identity, parameter): no RNG state, any order.
    k = torch.arange(IDENTITY_DIM, dtype=torch.int64)
    x = idx[:, None] * 0x9E3779B1 + k[None, :] * 0x85EBCA77 + (seed + 1) * 0xC2B2AE3D
    for mul in (0x7FEB352D, 0x846CA68B):
        x = x ^ (x >> 15)
        x = (x * mul) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return (x & 0xFFFFFF).to(torch.float32) / float(0xFFFFFF)


def sample_pose(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``[n, 3]`` yaw, pitch, roll in degrees: normal with :data:`POSE_STD`, clipped to :data:`POSE_LIMIT`."""
    std, lim = torch.tensor(POSE_STD), torch.tensor(POSE_LIMIT)
    return (torch.randn(n, 3, generator=generator) * std).clamp(-lim, lim)


def sample_expression(n: int, generator: torch.Generator | None = None, prototype_prob: float = 0.4) -> Tensor:
    """``[n, 8]`` expressions: with ``prototype_prob`` a DFEW class at a random intensity (plus a little noise),
    else independent sparse coefficients (each active with probability 0.4, uniform over its range)."""
    cls = torch.randint(0, 7, (n,), generator=generator)
    intensity = 0.35 + 0.65 * torch.rand(n, 1, generator=generator)
    proto = DFEW_PROTOTYPES[cls] * intensity + 0.06 * torch.randn(n, EXPRESSION_DIM, generator=generator)
    active = torch.rand(n, EXPRESSION_DIM, generator=generator) < 0.4
    free = EXPRESSION_LOW + (EXPRESSION_HIGH - EXPRESSION_LOW) * torch.rand(n, EXPRESSION_DIM, generator=generator)
    free = torch.where(active, free, torch.zeros_like(free))
    use_proto = torch.rand(n, 1, generator=generator) < prototype_prob
    return torch.where(use_proto, proto, free).clamp(EXPRESSION_LOW, EXPRESSION_HIGH)


def dfew_expression(label: int | Tensor, intensity: float | Tensor = 1.0) -> Tensor:
    """Expression ``[N, 8]`` of DFEW class ``label`` (0..6) at ``intensity``."""
    lab = torch.as_tensor(label).reshape(-1)
    return DFEW_PROTOTYPES[lab] * torch.as_tensor(intensity, dtype=torch.float32).reshape(-1, 1)


# ------------------------------------------------------------------------------------------------ geometry
@dataclass
class _Geometry:
    """Per-image geometry derived from identity and expression, each ``[B]`` (head-local model units)."""

    a: Tensor
    b: Tensor
    c: Tensor
    jaw_a: Tensor
    jaw_top: Tensor
    chin: Tensor
    eye_sep: Tensor
    eye_y: Tensor
    eye_w: Tensor
    lid_up: Tensor
    lid_low: Tensor
    eye_h: Tensor
    brow_y: Tensor
    brow_inner_drop: Tensor
    brow_shift: Tensor
    brow_thick: Tensor
    brow_len: Tensor
    nose_y: Tensor  # nose bottom
    nose_w: Tensor
    nose_len: Tensor
    mouth_y: Tensor
    mouth_w: Tensor
    corner_lift: Tensor
    gap: Tensor
    lip_thick: Tensor
    lip_raise: Tensor
    hairline: Tensor
    hair_len: Tensor
    hair_volume: Tensor


def _geometry(identity: Tensor, expression: Tensor) -> _Geometry:
    P = lambda name: physical(identity, name)  # noqa: E731
    e = {n: expression[:, i] for i, n in enumerate(EXPRESSION_NAMES)}
    a, b, c = P("head_w"), P("head_h"), P("head_d")
    eye_y, eye_h = P("eye_y"), P("eye_h")
    nose_y = eye_y - P("nose_len")
    mouth_y = nose_y - P("mouth_gap")
    gap = 0.16 * e["mouth_open"] + 0.012 * e["smile"] + 0.03 * e["lip_stretch"]
    eye = e["eye_open"]
    openness = 1 + 0.97 * eye.clamp(max=0) + 0.75 * eye.clamp(min=0) - 0.3 * e["smile"] - 0.3 * e["nose_wrinkle"]
    openness = openness.clamp(0.02, 1.9)
    return _Geometry(
        a=a,
        b=b,
        c=c,
        jaw_a=a * P("jaw_w"),
        jaw_top=mouth_y + 0.06,
        chin=-P("chin") * b - 0.55 * 0.16 * e["mouth_open"],
        eye_sep=P("eye_sep"),
        eye_y=eye_y,
        eye_w=P("eye_w") * (1 + 0.08 * e["eye_open"].clamp(min=0)),
        lid_up=eye_h * openness,
        lid_low=eye_h * 0.6 * (1 - 0.35 * e["smile"]) * (1.5 * openness).clamp(max=1.0),
        eye_h=eye_h,
        brow_y=eye_y + P("brow_gap") + 0.1 * e["brow_raise"] - 0.03 * e["brow_furrow"],
        brow_inner_drop=0.045 * e["brow_furrow"] - 0.025 * e["brow_raise"] * (1 - e["brow_furrow"]),
        brow_shift=0.022 * e["brow_furrow"],
        brow_thick=P("brow_thick"),
        brow_len=P("brow_len"),
        nose_y=nose_y,
        nose_w=P("nose_w") * (1 + 0.3 * e["nose_wrinkle"]),
        nose_len=P("nose_len"),
        mouth_y=mouth_y,
        mouth_w=P("mouth_w") * (1 + 0.2 * e["smile"] + 0.4 * e["lip_stretch"] - 0.15 * e["frown"]),
        corner_lift=0.055 * e["smile"] - 0.085 * e["frown"] - 0.03 * e["lip_stretch"],
        gap=gap,
        lip_thick=P("lip_thick") * (1 - 0.3 * e["lip_stretch"]),
        lip_raise=0.04 * e["nose_wrinkle"],
        hairline=P("hairline") * P("head_h"),
        hair_len=P("hair_len"),
        hair_volume=P("hair_volume"),
    )


def _surface_z(x: Tensor, y: Tensor, g: _Geometry) -> Tensor:
    """z of the head ellipsoid's front surface at head-local (x, y) (clamped near the silhouette)."""
    r = 1 - (x / g.a[:, None]) ** 2 - (y / g.b[:, None]) ** 2
    return g.c[:, None] * r.clamp(min=0.01).sqrt()


def _lid_curves(xi: Tensor, g: _Geometry) -> tuple[Tensor, Tensor]:
    """Upper and lower lid heights above/below the eye centre at ``xi = x / eye_w`` (|xi| <= 1)."""
    u = (1 - xi**2).clamp(min=0)
    return g.lid_up[:, None] * u, -g.lid_low[:, None] * u


def _mouth_curves(xi: Tensor, g: _Geometry) -> dict[str, Tensor]:
    """The four lip contours (head-local y) at ``xi = x / mouth_w``: upper outer/inner, lower inner/outer."""
    xi2 = xi.clamp(-1, 1) ** 2
    line = g.mouth_y[:, None] + g.corner_lift[:, None] * xi2
    body = (1 - xi2).clamp(min=0).sqrt()
    gap = g.gap[:, None] * (1 - xi2).clamp(min=0) ** 0.7
    upper_in = line + 0.15 * gap
    return {
        "upper_out": upper_in + (g.lip_thick[:, None] + g.lip_raise[:, None]) * body + 0.004,
        "upper_in": upper_in,
        "lower_in": line - 0.85 * gap,
        "lower_out": line - 0.85 * gap - 1.25 * g.lip_thick[:, None] * body - 0.004,
    }


def _landmarks_local(g: _Geometry) -> Tensor:
    """68 head-local landmark points ``[B, 68, 3]`` (on the head surface; nose points on the nose)."""
    B = g.a.shape[0]
    dev = g.a.device
    pts_x, pts_y = [], []
    # jaw 0..16: an ellipse from the ear line through the chin (the outline below jaw_top, the head edge above)
    phi = torch.linspace(-0.45, math.pi + 0.45, 17, device=dev)[None]
    depth = (g.jaw_top - g.chin)[:, None]
    jx = -g.jaw_a[:, None] * torch.cos(phi)
    jy = g.jaw_top[:, None] - depth * torch.sin(phi)
    pts_x.append(jx * torch.where(torch.sin(phi) < 0, g.a[:, None] / g.jaw_a[:, None] * 0.97, torch.ones_like(jx)))
    pts_y.append(torch.where(torch.sin(phi) < 0, g.jaw_top[:, None] - 0.25 * torch.sin(phi) * g.b[:, None], jy))
    # brows 17..21 (image-left, outer -> inner), 22..26 (image-right, inner -> outer), along the upper edge
    t = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0], device=dev)[None]
    for side, order in ((-1.0, t), (1.0, t.flip(1))):
        bx = side * (g.eye_sep[:, None] - g.brow_shift[:, None] + order * g.brow_len[:, None])
        by = _brow_center_y(order, g) + 0.5 * g.brow_thick[:, None] * (1 - 0.4 * order**2)
        pts_x.append(bx)
        pts_y.append(by)
    # nose bridge 27..30 (eye line to the tip), nostril base 31..35
    s = torch.linspace(0, 1, 4, device=dev)[None]
    pts_x.append(torch.zeros(B, 4, device=dev))
    pts_y.append(g.eye_y[:, None] - s * (g.nose_len[:, None] * 0.8))
    k = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], device=dev)[None]
    pts_x.append(k * g.nose_w[:, None] * 0.85)
    pts_y.append(g.nose_y[:, None] + 0.012 * (1 - k.abs()))
    # eyes 36..41 (image-left: outer corner, upper lid outer->inner, inner corner, lower lid inner->outer), 42..47
    xi_left = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3], device=dev)[None]
    xi_right = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3], device=dev)[None]
    upper = torch.tensor([0, 1, 1, 0, 0, 0], device=dev, dtype=torch.bool)[None]
    for side, xi in ((-1.0, xi_left), (1.0, xi_right)):
        up, low = _lid_curves(xi, g)
        pts_x.append(side * g.eye_sep[:, None] + xi * g.eye_w[:, None])
        pts_y.append(g.eye_y[:, None] + torch.where(upper, up, low))
    # mouth: outer 48..59, inner 60..67
    xo = torch.tensor([-1.0, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3], device=dev)[None]
    cur = _mouth_curves(xo, g)
    top = torch.tensor([1] * 7 + [0] * 5, device=dev, dtype=torch.bool)[None]
    mid = 0.5 * (cur["upper_in"] + cur["lower_in"])
    yo = torch.where(top, cur["upper_out"], cur["lower_out"])
    yo = torch.where(xo.abs() == 1, mid, yo)
    pts_x.append(xo * g.mouth_w[:, None])
    pts_y.append(yo)
    xin = torch.tensor([-0.85, -0.5, 0.0, 0.5, 0.85, 0.5, 0.0, -0.5], device=dev)[None]
    cur = _mouth_curves(xin, g)
    top = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0], device=dev, dtype=torch.bool)[None]
    yi = torch.where(top, cur["upper_in"], cur["lower_in"])
    yi = torch.where(xin.abs() > 0.8, 0.5 * (cur["upper_in"] + cur["lower_in"]), yi)
    pts_x.append(xin * g.mouth_w[:, None])
    pts_y.append(yi)
    x = torch.cat(pts_x, 1)
    y = torch.cat(pts_y, 1)
    z = _surface_z(x, y, g)
    # nose points stand out of the face: bridge rises to the tip, the base sits under the bulb
    nose_out = torch.zeros_like(z)
    nose_out[:, 27:31] = torch.linspace(0.02, 1.0, 4, device=dev)[None] * (0.8 * g.nose_len[:, None] * 0.42)
    nose_out[:, 31:36] = 0.35 * g.nose_len[:, None] * 0.42
    return torch.stack([x, y, z + nose_out], -1)


def _brow_center_y(xi: Tensor, g: _Geometry) -> Tensor:
    """Brow centre line at ``xi`` in [-1 inner, 1 outer] (head-local y)."""
    arch = 0.018 * (1 - xi**2)
    return g.brow_y[:, None] + arch - g.brow_inner_drop[:, None] * (1 - xi) / 2


# Fixed surface grid (fractions of the head half-axes) of the FLAME-like vertex set.
_GRID = torch.stack(
    torch.meshgrid(torch.linspace(-0.75, 0.75, 9), torch.linspace(-0.85, 0.55, 10), indexing="xy"), -1
).reshape(-1, 2)


def rotation(pose: Tensor) -> Tensor:
    """Head rotation matrices ``[B, 3, 3]`` of ``pose [B, 3]`` (yaw, pitch, roll in degrees)."""
    return euler_to_rotation_matrix(pose)


def landmarks3d_model(
    identity: Tensor,
    pose: Tensor,
    expression: Tensor,
    with_grid: bool = False,
    rotation_matrix: Tensor | None = None,
) -> Tensor:
    """Model-space 3-D landmarks ``[B, 68, 3]`` (plus 90 surface grid points with ``with_grid``).

    ``rotation_matrix`` ``[B, 3, 3]`` replaces the rotation of ``pose`` (e.g. from an axis-angle estimate).
    """
    _check_params(identity, pose, expression)
    g = _geometry(identity, expression)
    pts = _landmarks_local(g)
    if with_grid:
        gx = _GRID[:, 0].to(identity)[None] * g.a[:, None]
        gy = _GRID[:, 1].to(identity)[None] * g.b[:, None]
        below = gy < g.mouth_y[:, None]
        gy = torch.where(below, gy - 0.5 * g.gap[:, None], gy)
        grid = torch.stack([gx, gy, _surface_z(gx, gy, g)], -1)
        pts = torch.cat([pts, grid], 1)
    R = rotation(pose) if rotation_matrix is None else rotation_matrix
    return pts @ R.transpose(1, 2)


def to_pixels(points: Tensor, size: int) -> Tensor:
    """Model-space ``[..., >=2]`` -> pixel coordinates ``[..., 2]`` of a ``size`` image (y flipped)."""
    return torch.stack([(points[..., 0] + 1) * size / 2, (1 - points[..., 1]) * size / 2], -1)


def landmarks(identity: Tensor, pose: Tensor, expression: Tensor, size: int = 64) -> Tensor:
    """The 68 landmarks in pixels of a ``size`` render: ``[B, 68, 2]`` (x right, y down, 0 at the top-left edge)."""
    return to_pixels(landmarks3d_model(identity, pose, expression), size)


# ------------------------------------------------------------------------------------------------ colours
def _colours(identity: Tensor) -> dict[str, Tensor]:
    """Per-image RGB colours ``[B, 3]`` in [0, 1]."""
    P = lambda name: physical(identity, name)[:, None]  # noqa: E731
    t = lambda *v: identity.new_tensor(v)[None] / 255  # noqa: E731
    tone, warm = P("skin_tone"), P("skin_warmth")
    skin = t(92, 58, 42) + (t(246, 212, 188) - t(92, 58, 42)) * tone + t(14, 2, -14) * (warm - 0.5) * 2
    hl, hr = P("hair_light"), P("hair_red")
    hair = t(22, 18, 16) + (t(212, 176, 118) - t(22, 18, 16)) * hl**1.3
    hair = hair + (t(150, 62, 28) - hair) * 0.55 * hr * (1 - hl)
    iris = t(88, 54, 30) + (t(72, 118, 150) - t(88, 54, 30)) * P("iris")
    lip = skin * 0.7 + (t(168, 50, 62) - skin * 0.7) * (0.35 + 0.5 * P("lip_red"))
    bg = 0.2 + 0.6 * torch.cat([P("bg_r"), P("bg_g"), P("bg_b")], 1)
    cloth = 0.1 + 0.8 * torch.cat([P("cloth_r"), P("cloth_g"), P("cloth_b")], 1)
    return {
        "skin": skin.clamp(0, 1),
        "hair": hair.clamp(0, 1),
        "brow": (hair * 0.75).clamp(0, 1),
        "iris": iris,
        "lip": lip.clamp(0, 1),
        "bg": bg,
        "cloth": cloth,
        "sclera": t(236, 232, 226).expand_as(skin),
        "dark": t(30, 16, 18).expand_as(skin),
        "teeth": t(238, 234, 222).expand_as(skin),
    }


# ------------------------------------------------------------------------------------------------ rendering
def _ray_ellipsoid(
    px: Tensor, py: Tensor, centre: Tensor, radii: Tensor, Rt: Tensor, pix: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Front hits of vertical rays through (px, py) with rotated ellipsoids.

    px, py: ``[H, W]`` model coordinates; centre ``[B, 3]`` (model), radii ``[B, 3]``, Rt ``[B, 3, 3]`` (model ->
    local). Returns (coverage ``[B,H,W]`` in [0, 1], ray parameter t = z of the hit, the local hit point and the
    model-space unit normal as lists of three ``[B,H,W]`` components).
    """
    B3 = lambda v: v[:, None, None]  # noqa: E731
    ox = px[None] - B3(centre[:, 0])
    oy = py[None] - B3(centre[:, 1])
    oz = -centre[:, 2]
    inv_r2 = 1.0 / radii**2
    # local ray origin q0 = Rt o and direction d = Rt e_z, one component at a time ([B,H,W] each)
    q0 = [B3(Rt[:, i, 0]) * ox + B3(Rt[:, i, 1]) * oy + B3(Rt[:, i, 2] * oz) for i in range(3)]
    d = Rt[:, :, 2]
    A = (d**2 * inv_r2).sum(1)
    Bq = sum(q0[i] * B3(d[:, i] * inv_r2[:, i]) for i in range(3))
    Cq = sum(q0[i] ** 2 * B3(inv_r2[:, i]) for i in range(3)) - 1
    disc = Bq**2 - B3(A) * Cq
    t = (disc.clamp(min=0).sqrt() - Bq) / B3(A)
    # signed distance to the silhouette from the minimum of the implicit function along the ray
    r_eff = (radii[:, 0] * radii[:, 1]).sqrt()
    cover = (0.5 + disc * B3(0.5 * r_eff / (A * pix))).clamp(0, 1)
    q = [q0[i] + t * B3(d[:, i]) for i in range(3)]
    nl = [q[i] * B3(inv_r2[:, i]) for i in range(3)]
    n = [sum(B3(Rt[:, j, i]) * nl[j] for j in range(3)) for i in range(3)]  # R @ n_local
    inv = (n[0] ** 2 + n[1] ** 2 + n[2] ** 2).clamp(min=1e-16).rsqrt()
    return cover, t, q, [c * inv for c in n]


def _soft(sd: Tensor, width: Tensor | float) -> Tensor:
    """Coverage of a signed distance ``sd`` (negative inside) with an edge ``width`` wide."""
    return (0.5 - sd / width).clamp(0, 1)


def _over(dst: Tensor, colour: Tensor, alpha: Tensor) -> Tensor:
    """Composite ``colour`` (``[B,3]`` or ``[B,3,H,W]``) over ``dst [B,3,H,W]`` with ``alpha [B,H,W]``."""
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    return torch.lerp(dst, colour, alpha[:, None])


def _shade(n: list[Tensor]) -> Tensor:
    """Lambertian shade ``[B,H,W]`` in [0.5, 1] of unit normals (three ``[B,H,W]`` components)."""
    norm = math.sqrt(sum(v * v for v in _LIGHT))
    dot = sum(c * (v / norm) for c, v in zip(n, _LIGHT))
    return 0.5 + 0.5 * dot.clamp(min=0)


def render(
    identity: Tensor, pose: Tensor, expression: Tensor, size: int = 64, supersample: int | None = None
) -> Tensor:
    """Render faces: ``[B, 3, size, size]`` RGB in [-1, 1] (deterministic; differentiable almost everywhere).

    identity ``[B, IDENTITY_DIM]`` in [0, 1]; pose ``[B, 3]`` degrees; expression ``[B, 8]``. ``supersample``
    defaults to 2 below 64 px and 1 from 64 px (the soft edges antialias; 3x supersampling changes a 64 px render
    by 0.005 on average).
    """
    B = _check_params(identity, pose, expression)
    if size < 8:
        raise ValueError(f"faceworld.render: size must be at least 8, got {size}")
    ss = supersample or (2 if size < 64 else 1)
    n = size * ss
    dev, dt = identity.device, identity.dtype
    pix = 2.0 / n
    coords = (torch.arange(n, device=dev, dtype=dt) + 0.5) * pix - 1
    px = coords[None, :].expand(n, n)
    py = -coords[:, None].expand(n, n)
    g = _geometry(identity, expression)
    col = _colours(identity)
    R = rotation(pose).to(dt)
    Rt = R.transpose(1, 2)
    zero = torch.zeros(B, device=dev, dtype=dt)

    # background: a vertical gradient of the identity's colour
    img = col["bg"][:, :, None, None] * (1.0 - 0.12 * py)[None, None]
    # shoulders and neck (they do not rotate with the head)
    sh = ((px / 1.05) ** 2 + ((py + 1.42) / 0.62) ** 2).sqrt() - 1
    shade_sh = 0.8 + 0.2 * (1 - (px / 1.05) ** 2).clamp(min=0)
    img = _over(
        img, col["cloth"][:, :, None, None] * shade_sh[None, None], _soft(sh * 0.6, pix)[None].expand(B, -1, -1)
    )
    neck_w = 0.27 * g.a / 0.58
    neck = torch.maximum(px.abs()[None] - neck_w[:, None, None], (py[None] + 0.3).expand(B, -1, -1))
    neck_shade = 0.62 + 0.25 * (1 - (px[None] / neck_w[:, None, None]) ** 2).clamp(min=0)
    img = _over(img, col["skin"][:, :, None, None] * neck_shade[:, None], _soft(neck, pix))

    centre = torch.zeros(B, 3, device=dev, dtype=dt)

    def local_to_model(p: Tensor) -> Tensor:
        return torch.einsum("bij,bj->bi", R, p)

    # hair volume behind the head (rotates with it), cut below at a length-dependent height
    vol = g.hair_volume
    h_centre = local_to_model(torch.stack([zero, 0.1 * g.b + 0.05 * vol, -0.12 * g.c], 1))
    h_radii = torch.stack([g.a * (1.1 + 0.14 * vol), g.b * (1.0 + 0.08 * vol), g.c * (1.02 + 0.1 * vol)], 1)
    cov, _, q, n_h = _ray_ellipsoid(px, py, h_centre, h_radii, Rt, pix)
    cut = (0.05 - 1.15 * g.hair_len) * g.b
    hair_alpha = cov * _soft(cut[:, None, None] - q[1], pix * 2)
    img = _over(img, col["hair"][:, :, None, None] * (0.75 * _shade(n_h))[:, None], hair_alpha)

    # ears
    for side in (-1.0, 1.0):
        e_centre = local_to_model(torch.stack([side * g.a * 0.95, g.eye_y - 0.12, -0.12 * g.c], 1))
        e_radii = torch.stack([0.06 + zero, 0.12 + zero, 0.08 + zero], 1)
        cov, _, _, n_e = _ray_ellipsoid(px, py, e_centre, e_radii, Rt, pix)
        img = _over(img, col["skin"][:, :, None, None] * (0.88 * _shade(n_e))[:, None], cov)

    # the head: skin, hair cap, painted features
    cov, t_head, q, n_head = _ray_ellipsoid(px, py, centre, torch.stack([g.a, g.b, g.c], 1), Rt, pix)
    x, y, z = q
    facing = n_head[2].clamp(min=0.25)
    w = pix / facing  # a sample's width in head-local units
    B3 = lambda v: v[:, None, None]  # noqa: E731
    # the jaw: below jaw_top the face narrows to an ellipse ending at the chin
    depth = B3(g.jaw_top - g.chin)
    jaw = ((x / B3(g.jaw_a)) ** 2 + ((y - B3(g.jaw_top)) / depth).clamp(max=0) ** 2).sqrt() - 1
    jaw = torch.where(y < B3(g.jaw_top), jaw * depth.clamp(max=B3(g.jaw_a)), torch.full_like(jaw, -1.0))
    head_alpha = cov * _soft(jaw, w)
    shade = _shade(n_head)[:, None]
    surf = col["skin"][:, :, None, None].expand(-1, -1, n, n)

    # hair cap: above the hair line (dipping at the temples) and over the back and sides of the head
    hl = B3(g.hairline) - 0.35 * B3(g.b) * (x / B3(g.a)) ** 2
    cap = torch.minimum(hl - y, (z - 0.25 * B3(g.c)) + (B3(g.eye_y) + 0.05 - y).clamp(min=0) * 3)
    surf = _over(surf, col["hair"], _soft(cap, w * 2))
    # brows
    for side in (-1.0, 1.0):
        u = (side * x - B3(g.eye_sep - g.brow_shift)) / B3(g.brow_len)
        cy = _brow_center_y(u.clamp(-1, 1).flatten(1), g).view_as(u)
        thick = B3(g.brow_thick) * (1 - 0.4 * u.clamp(-1, 1) ** 2)
        sd = torch.maximum((y - cy).abs() - thick / 2, (u.abs() - 1) * B3(g.brow_len))
        surf = _over(surf, col["brow"], _soft(sd, w))
    # eyes: sclera between the lids, iris, pupil, lash line
    for side in (-1.0, 1.0):
        ex = x - side * B3(g.eye_sep)
        ey = y - B3(g.eye_y)
        xi = (ex / B3(g.eye_w)).clamp(-1, 1)
        up, low = _lid_curves(xi.flatten(1), g)
        up, low = up.view_as(xi), low.view_as(xi)
        sd_eye = torch.maximum(torch.maximum(ex.abs() - B3(g.eye_w), ey - up), low - ey)
        eye_in = _soft(sd_eye, w)
        surf = _over(surf, col["sclera"], eye_in)
        r_iris = 0.82 * B3(g.eye_h)
        d_iris = (ex**2 + (ey - 0.1 * B3(g.eye_h)) ** 2).sqrt()
        surf = _over(surf, col["iris"], eye_in * _soft(d_iris - r_iris, w))
        surf = _over(surf, col["dark"], eye_in * _soft(d_iris - 0.42 * r_iris, w))
        lash = torch.maximum((ey - up).abs() - 0.011, ex.abs() - B3(g.eye_w) * 1.05)
        surf = _over(surf, col["dark"], 0.85 * _soft(lash, w))
    # nose wrinkle lines and smile folds
    for k in (0.0, 1.0):
        yy = B3(g.eye_y) - 0.015 - 0.03 * k
        sd = torch.maximum((y - yy).abs() - 0.011, x.abs() - 0.065)
        alpha = 0.8 * B3(expression[:, EXPRESSION_NAMES.index("nose_wrinkle")]) * _soft(sd, w)
        surf = _over(surf, col["skin"] * 0.45, alpha)
    smile = expression[:, EXPRESSION_NAMES.index("smile")]
    for side in (-1.0, 1.0):
        # a straight fold from beside the nose wing to beyond the mouth corner
        p0x, p0y = B3(g.nose_w + 0.03), B3(g.nose_y + 0.015)
        p1x, p1y = B3(g.mouth_w + 0.035), B3(g.mouth_y - 0.01)
        vx, vy = p1x - p0x, p1y - p0y
        h = (((side * x - p0x) * vx + (y - p0y) * vy) / (vx**2 + vy**2)).clamp(0, 1)
        dist = ((side * x - p0x - h * vx) ** 2 + (y - p0y - h * vy) ** 2).sqrt() - 0.007
        surf = _over(surf, col["skin"] * 0.6, 0.6 * B3(smile) * _soft(dist, w))
    # mouth: lips, opening, teeth
    xi = x / B3(g.mouth_w)
    cur = {k: v.view_as(xi) for k, v in _mouth_curves(xi.clamp(-1, 1).flatten(1), g).items()}
    side_sd = (xi.abs() - 1) * B3(g.mouth_w)
    lips = torch.maximum(torch.maximum(y - cur["upper_out"], cur["lower_out"] - y), side_sd)
    surf = _over(surf, col["lip"], _soft(lips, w))
    opening = torch.maximum(torch.maximum(y - cur["upper_in"], cur["lower_in"] - y), side_sd + 0.01)
    surf = _over(surf, col["dark"], _soft(opening, w))
    teeth = torch.maximum(opening, (cur["upper_in"] - 0.45 * (cur["upper_in"] - cur["lower_in"])) - y)
    surf = _over(surf, col["teeth"], _soft(teeth, w))
    img = _over(img, surf * shade, head_alpha)

    # the nose: a ridge and a tip bulb standing out of the face
    nose_alpha = None
    for ny, ry, rz, rx in (
        (g.eye_y - 0.42 * g.nose_len, 0.5 * g.nose_len, 0.075 + zero, 0.45 * g.nose_w),
        (g.nose_y + 0.45 * g.nose_w, 0.72 * g.nose_w, 0.42 * 0.8 * g.nose_len * 0.55, g.nose_w),
    ):
        zs = _surface_z(zero[:, None], ny[:, None], g)[:, 0]
        n_centre = local_to_model(torch.stack([zero, ny, zs - 0.35 * rz], 1))
        cov, t_n, q_n, n_n = _ray_ellipsoid(px, py, n_centre, torch.stack([rx, ry, rz], 1), Rt, pix)
        front = _soft(t_head - t_n, pix) * (head_alpha > 0.5)
        a_n = cov * front
        nose_col = col["skin"][:, :, None, None] * _shade(n_n)[:, None]
        if nose_alpha is None:
            # nostrils: dark spots on the front-bottom of the bulb's neighbour below
            nose_alpha = a_n
        else:
            nos = torch.minimum(
                (
                    (q_n[0].abs() - 0.5 * B3(rx)) ** 2 / B3(0.28 * rx) ** 2
                    + (q_n[1] + 0.55 * B3(ry)) ** 2 / B3(0.3 * ry) ** 2
                ).sqrt()
                - 1,
                torch.ones_like(t_n),
            )
            nose_col = _over(nose_col, col["dark"], 0.8 * _soft(nos * B3(0.3 * ry), w))
        img = _over(img, nose_col, a_n)

    if ss > 1:
        img = F.avg_pool2d(img, ss)
    return (img.clamp(0, 1) * 2 - 1).contiguous()


def to_uint8(images: Tensor) -> Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> ``[B, H, W, 3]`` uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


# ------------------------------------------------------------------------------------------------ sequences
def driving_sequence(num_frames: int, seed: int = 0, amplitude: float = 1.0) -> tuple[Tensor, Tensor]:
    """A smooth head motion and expression trajectory: (pose ``[T, 3]``, expression ``[T, 8]``).

    Pose follows sums of slow sinusoids within the pose limits; the expression moves through a few DFEW classes
    and free coefficients with smooth transitions (and one blink every ~2 s at 25 fps).
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_frames, dtype=torch.float32)[:, None]
    freq = 0.005 + 0.02 * torch.rand(2, 3, generator=g)
    phase = 2 * math.pi * torch.rand(2, 3, generator=g)
    lim = torch.tensor(POSE_LIMIT) * 0.75 * amplitude
    pose = (
        lim * 0.5 * (torch.sin(2 * math.pi * freq[0] * t + phase[0]) + torch.sin(2 * math.pi * freq[1] * t + phase[1]))
    )
    n_keys = max(2, num_frames // 25 + 2)
    keys = sample_expression(n_keys, g, prototype_prob=0.7)
    pos = t[:, 0] / 25.0
    i0 = pos.floor().long().clamp(max=n_keys - 2)
    frac = (pos - i0).clamp(0, 1)[:, None]
    frac = frac * frac * (3 - 2 * frac)
    expr = keys[i0] * (1 - frac) + keys[i0 + 1] * frac
    blink = torch.exp(-(((t[:, 0] % 50) - 40) ** 2) / 4.0)
    eye = EXPRESSION_NAMES.index("eye_open")
    expr[:, eye] = expr[:, eye] * (1 - blink) - blink
    return pose, expr.clamp(EXPRESSION_LOW, EXPRESSION_HIGH)


# ------------------------------------------------------------------------------------------------ dataset
class FaceWorldDataset(Dataset):
    """Face-world renders of one split's identities, deterministic per ``(seed, index)``.

    Item ``i``: identity number ``split_range[i % n_identities]`` (``n_identities`` of the split, default all),
    pose and expression drawn from a generator seeded with ``(seed, i)``. Returns a dict: ``image`` ``[3, size,
    size]`` in [-1, 1], ``identity`` ``[IDENTITY_DIM]``, ``identity_index`` (int), ``pose`` ``[3]``,
    ``expression`` ``[8]``, ``landmarks`` ``[68, 2]`` pixels.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int = 10_000,
        seed: int = 0,
        n_identities: int | None = None,
        world_seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"faceworld: split must be one of {sorted(SPLITS)}, got {split!r}")
        rng = SPLITS[split]
        n = len(rng) if n_identities is None else int(n_identities)
        if not 1 <= n <= len(rng):
            raise ValueError(f"faceworld: n_identities must be in [1, {len(rng)}] for split {split!r}, got {n}")
        self.split, self.size, self.length, self.seed, self.world_seed = split, size, int(length), seed, world_seed
        self.identity_numbers = range(rng.start, rng.start + n)

    def __len__(self) -> int:
        return self.length

    def _item_seed(self, i: int) -> int:
        split_code = list(SPLITS).index(self.split)
        return (self.seed * 1_000_003 + split_code * 7_919 + i * 2_654_435_761) % (2**62)

    def params(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """Parameters of items ``indices``: identity, identity_index, pose, expression (batched)."""
        ids = torch.tensor([self.identity_numbers[i % len(self.identity_numbers)] for i in indices])
        poses, exprs = [], []
        for i in indices:
            g = torch.Generator().manual_seed(self._item_seed(int(i)))
            poses.append(sample_pose(1, g))
            exprs.append(sample_expression(1, g))
        return {
            "identity": identity_params(ids, self.world_seed),
            "identity_index": ids,
            "pose": torch.cat(poses),
            "expression": torch.cat(exprs),
        }

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(f"faceworld: index {i} out of range for a dataset of {self.length}")
        p = self.params([i])
        image = render(p["identity"], p["pose"], p["expression"], self.size)[0]
        lm = landmarks(p["identity"], p["pose"], p["expression"], self.size)[0]
        return {
            "image": image,
            "identity": p["identity"][0],
            "identity_index": p["identity_index"][0],
            "pose": p["pose"][0],
            "expression": p["expression"][0],
            "landmarks": lm,
        }


class ReenactmentPairs(Dataset):
    """Reenactment pairs of one split's identities with the exact answer.

    ``mode="self"``: the driver is another frame (pose, expression) of the source's identity, so the ground truth
    is the driver itself; ``mode="cross"``: the driver shows another identity, and the ground truth is
    ``render(source identity, driver pose, driver expression)``. Item ``i`` is deterministic in ``(seed, mode, i)``:
    a dict of ``source``, ``driver``, ``target`` images ``[3, size, size]`` in [-1, 1]; ``source_identity``,
    ``driver_identity`` ``[IDENTITY_DIM]``; ``source_pose`` / ``driver_pose`` ``[3]``; ``source_expression`` /
    ``driver_expression`` ``[8]``; ``source_landmarks``, ``driver_landmarks``, ``target_landmarks`` ``[68, 2]``
    pixels; ``source_index`` / ``driver_index`` (identity numbers).
    """

    def __init__(self, split: str = "test", size: int = 64, n_pairs: int = 200, mode: str = "cross", seed: int = 0):
        if mode not in ("self", "cross"):
            raise ValueError(f"faceworld: mode must be 'self' or 'cross', got {mode!r}")
        if split not in SPLITS:
            raise ValueError(f"faceworld: split must be one of {sorted(SPLITS)}, got {split!r}")
        self.split, self.size, self.n_pairs, self.mode, self.seed = split, size, int(n_pairs), mode, seed

    def __len__(self) -> int:
        return self.n_pairs

    def _draw(self, i: int) -> dict[str, Tensor]:
        rng = SPLITS[self.split]
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + (self.mode == "cross") * 7_919 + i * 104_729) % 2**62
        )
        src = int(torch.randint(len(rng), (1,), generator=g))
        drv = src
        if self.mode == "cross":
            drv = (src + 1 + int(torch.randint(len(rng) - 1, (1,), generator=g))) % len(rng)
        return {
            "source_index": torch.tensor(rng.start + src),
            "driver_index": torch.tensor(rng.start + drv),
            "source_pose": sample_pose(1, g)[0],
            "source_expression": sample_expression(1, g)[0],
            "driver_pose": sample_pose(1, g)[0],
            "driver_expression": sample_expression(1, g)[0],
        }

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < self.n_pairs:
            raise IndexError(f"faceworld: pair {i} out of range for {self.n_pairs} pairs")
        p = self._draw(i)
        ids = identity_params(torch.stack([p["source_index"], p["driver_index"]]))
        ident = torch.stack([ids[0], ids[1], ids[0]])
        pose = torch.stack([p["source_pose"], p["driver_pose"], p["driver_pose"]])
        expr = torch.stack([p["source_expression"], p["driver_expression"], p["driver_expression"]])
        images = render(ident, pose, expr, self.size)
        lm = landmarks(ident, pose, expr, self.size)
        out = dict(p)
        out.update(
            source=images[0],
            driver=images[1],
            target=images[2],
            source_identity=ids[0],
            driver_identity=ids[1],
            source_landmarks=lm[0],
            driver_landmarks=lm[1],
            target_landmarks=lm[2],
        )
        return out


def render_sequence(identity: Tensor, pose: Tensor, expression: Tensor, size: int = 64, chunk: int = 64) -> Tensor:
    """One identity ``[IDENTITY_DIM]`` through a motion (pose ``[T, 3]``, expression ``[T, 8]``): ``[T, 3, size,
    size]`` in [-1, 1], rendered in chunks of ``chunk`` frames."""
    frames = []
    for i in range(0, pose.shape[0], chunk):
        p = pose[i : i + chunk]
        frames.append(render(identity.reshape(1, -1).expand(p.shape[0], -1), p, expression[i : i + chunk], size))
    return torch.cat(frames)
