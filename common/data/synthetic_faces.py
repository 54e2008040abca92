"""Procedural video clips of simple cartoon faces whose expression unfolds over time, in DFEW's on-disk layout.

Each clip has an identity (face shape, skin tone, hair, eye/mouth/brow geometry), a position, scale and head
pose (roll and yaw, drifting slightly over the clip) and an expression of one of the 7 DFEW classes
(0 happiness, 1 sadness, 2 neutral, 3 anger, 4 surprise, 5 disgust, 6 fear) that starts neutral, rises to its
apex at a random time and holds; blinks happen at random in every class. ``write_dataset`` stores clips as
frame folders ``<root>/<5-digit id>/<00001>.jpg`` plus annotation files ``DFEW_set_<k>_{train,test}.txt`` with
absolute paths under the DFEW authors' prefix, so a loader must rewrite the paths exactly as for the real data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NUM_CLASSES = 7
CLASS_NAMES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
AUTHORS_PREFIX = "/data/EECS-IoannisLab/datasets/DFEW/DFEW_Frame_Face"

# Apex deformation of each class (all 0 = neutral):
# eye openness factor - 1, brow raise, brow inner raise, brow inner x shift, mouth curve, mouth widen,
# mouth open, asymmetric lip raise, cheek blush, nose wrinkle, tear; plus a skin tint (cartoon conventions:
# red flush for anger, pallor for fear, a green tinge for disgust, a blue tinge for sadness).
_APEX = {
    0: dict(eye=-0.4, brow=0.04, inner=0.0, pinch=0.0, curve=0.22, widen=0.25, open=0.06, asym=0.0, blush=1.0),
    1: dict(
        eye=-0.35,
        brow=-0.02,
        inner=0.16,
        pinch=0.02,
        curve=-0.18,
        widen=-0.1,
        open=0.0,
        asym=0.0,
        tear=1.0,
        tint=(-25, -10, 30),
    ),
    2: dict(),
    3: dict(
        eye=-0.45, brow=-0.1, inner=-0.14, pinch=0.05, curve=-0.04, widen=-0.25, open=0.0, asym=0.0, tint=(60, -25, -25)
    ),
    4: dict(eye=0.7, brow=0.18, inner=0.0, pinch=0.0, curve=0.0, widen=-0.35, open=0.32, asym=0.0),
    5: dict(
        eye=-0.35,
        brow=-0.07,
        inner=-0.04,
        pinch=0.02,
        curve=-0.08,
        widen=0.0,
        open=0.04,
        asym=0.14,
        wrinkle=1.0,
        tint=(-20, 35, -20),
    ),
    6: dict(eye=0.5, brow=0.12, inner=0.1, pinch=0.06, curve=-0.06, widen=0.35, open=0.12, asym=0.0, tint=(35, 35, 45)),
}
_KEYS = ("eye", "brow", "inner", "pinch", "curve", "widen", "open", "asym", "blush", "wrinkle", "tear")


@dataclass
class Identity:
    """Fixed per clip: appearance and geometry in face units (radius 1)."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    background: tuple[int, int, int]
    aspect: float
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    iris: tuple[int, int, int]
    brow_y: float
    brow_w: float
    mouth_y: float
    mouth_w: float
    hair_h: float


def random_identity(rng: np.random.Generator) -> Identity:
    """A random face identity."""
    tone = rng.uniform(0.25, 1.0)
    skin = tuple(int(c) for c in np.array([235, 195, 165]) * tone + np.array([20, 15, 10]) * (1 - tone))
    hair = tuple(int(c) for c in rng.integers(10, 120, 3))
    bg = tuple(int(c) for c in rng.integers(30, 230, 3))
    iris = tuple(int(c) for c in rng.integers(20, 110, 3))
    return Identity(
        skin=skin,  # type: ignore[arg-type]
        hair=hair,  # type: ignore[arg-type]
        background=bg,  # type: ignore[arg-type]
        aspect=rng.uniform(1.05, 1.35),
        eye_x=rng.uniform(0.3, 0.42),
        eye_y=rng.uniform(-0.25, -0.1),
        eye_w=rng.uniform(0.17, 0.23),
        eye_h=rng.uniform(0.09, 0.12),
        iris=iris,  # type: ignore[arg-type]
        brow_y=rng.uniform(-0.5, -0.38),
        brow_w=rng.uniform(0.18, 0.26),
        mouth_y=rng.uniform(0.4, 0.55),
        mouth_w=rng.uniform(0.26, 0.38),
        hair_h=rng.uniform(0.15, 0.5),
    )


def expression_curve(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Intensity in [0, 1] per frame: neutral, a smooth rise from a random onset to the apex, then a hold."""
    t = np.arange(num_frames) / max(1, num_frames - 1)
    onset = rng.uniform(0.0, 0.35)
    apex = min(1.0, onset + rng.uniform(0.15, 0.45))
    x = np.clip((t - onset) / max(1e-6, apex - onset), 0.0, 1.0)
    peak = rng.uniform(0.75, 1.0)
    return peak * x * x * (3 - 2 * x)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> list[tuple[float, float]]:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a)))


def render_frame(ident: Identity, expr: dict[str, float], pose: dict[str, float], size: int = 64) -> np.ndarray:
    """One RGB uint8 frame ``[size, size, 3]``; ``expr`` holds the current deformation, ``pose`` the placement."""
    ss = 2  # supersampling
    s = size * ss
    img = Image.new("RGB", (s, s), ident.background)
    d = ImageDraw.Draw(img)
    tint = expr.get("tint", (0.0, 0.0, 0.0))
    skin = tuple(int(min(255, max(0, c + t))) for c, t in zip(ident.skin, tint))
    cx, cy, r = pose["cx"] * s, pose["cy"] * s, pose["scale"] * s
    roll, yaw = pose["roll"], pose["yaw"]
    cos, sin = math.cos(roll), math.sin(roll)

    def P(u: float, v: float, depth: float = 1.0) -> tuple[float, float]:
        # face units -> pixels: yaw shifts front features sideways and foreshortens, then roll about the centre
        u = u * math.cos(yaw) + depth * 0.35 * math.sin(yaw)
        x, y = u * r, v * r * ident.aspect
        return cx + x * cos - y * sin, cy + x * sin + y * cos

    def poly(points, **kw):
        d.polygon([P(u, v) for u, v in points], **kw)

    def line(points, width: float, fill):
        d.line([P(u, v) for u, v in points], fill=fill, width=max(1, int(round(width * r))), joint="curve")

    dark = tuple(int(c * 0.45) for c in ident.skin)
    brow = tuple(int(c * 0.5) for c in ident.hair)
    # hair behind, head, hair fringe
    poly(_ellipse(0, -0.15, 1.08, 0.98), fill=ident.hair)
    poly(_ellipse(0, 0, 1.0, 1.0, 40), fill=skin)
    poly([(u, v) for u, v in _ellipse(0, -0.95, 0.95, ident.hair_h, 24) if v <= -0.95 + ident.hair_h], fill=ident.hair)
    if expr.get("blush", 0) > 0:
        b = expr["blush"]
        blush = tuple(int(c * (1 - 0.5 * b) + t * 0.5 * b) for c, t in zip(skin, (240, 80, 90)))
        for sgn in (-1, 1):
            poly(_ellipse(sgn * 0.5, 0.2, 0.16, 0.1, 16), fill=blush)
    # eyes
    open_ = max(0.08, 1 + expr.get("eye", 0)) * pose.get("blink", 1.0)
    for sgn in (-1, 1):
        ex, ey = sgn * ident.eye_x, ident.eye_y
        eh = ident.eye_h * open_
        poly(_ellipse(ex, ey, ident.eye_w, eh, 20), fill=(245, 245, 245), outline=dark)
        ir = min(eh, ident.eye_w * 0.55)
        poly(_ellipse(ex, ey, ir * 0.9, ir, 14), fill=ident.iris)
        if expr.get("tear", 0) > 0.4:
            poly(_ellipse(ex + sgn * 0.05, ey + 0.2 + 0.15 * expr["tear"], 0.035, 0.06, 10), fill=(120, 170, 255))
    # brows: inner end at x = +-(0.1 - pinch), outer at +-(0.1 + brow_w*2)
    for sgn in (-1, 1):
        inner_x = sgn * (0.1 + 0.05 - expr.get("pinch", 0))
        outer_x = sgn * (0.1 + 0.05 + 2 * ident.brow_w)
        by = ident.brow_y - expr.get("brow", 0)
        line([(inner_x, by - expr.get("inner", 0)), (outer_x, by)], 0.09, brow)
    # nose and disgust wrinkles
    line([(0.0, -0.05), (0.05, 0.22), (-0.03, 0.25)], 0.035, dark)
    if expr.get("wrinkle", 0) > 0.3:
        for k in (-1, 1):
            line([(0.08 * k, 0.02), (0.16 * k, 0.1)], 0.03, dark)
            line([(0.08 * k, 0.1), (0.16 * k, 0.18)], 0.03, dark)
    # mouth: corners at +-w, curve raises the corners (image y down), asym raises the left corner
    w = ident.mouth_w * (1 + expr.get("widen", 0))
    my = ident.mouth_y
    curve, asym, opening = expr.get("curve", 0), expr.get("asym", 0), expr.get("open", 0)
    xs = np.linspace(-w, w, 15)
    upper = [(x, my - curve * (x / w) ** 2 - asym * max(0.0, -x / w) - opening * (1 - (x / w) ** 2) * 0.4) for x in xs]
    lower = [(x, my - curve * (x / w) ** 2 - asym * max(0.0, -x / w) + opening * (1 - (x / w) ** 2)) for x in xs]
    lip = (170, 30, 50)
    if opening > 0.02:
        poly(upper + lower[::-1], fill=(60, 20, 25), outline=lip)
    line(upper, 0.07, lip)
    if opening > 0.02:
        line(lower, 0.06, lip)
    return np.asarray(img.resize((size, size), Image.BILINEAR))


def render_clip(label: int, num_frames: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A clip of class ``label``: uint8 ``[num_frames, size, size, 3]``."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label {label} outside [0, {NUM_CLASSES})")
    ident = random_identity(rng)
    intensity = expression_curve(num_frames, rng)
    apex = _APEX[label]
    # neutral clips get a faint random "other" movement so that motion alone does not give the class away
    if label == 2:
        other = _APEX[int(rng.choice([0, 1, 3, 4, 5, 6]))]
        apex = {k: 0.15 * v for k, v in other.items() if k not in ("tear", "wrinkle", "blush", "tint")}
    pose0 = dict(
        cx=rng.uniform(0.45, 0.55),
        cy=rng.uniform(0.47, 0.55),
        scale=rng.uniform(0.36, 0.42),
        roll=rng.uniform(-0.2, 0.2),
        yaw=rng.uniform(-0.35, 0.35),
    )
    drift = {k: rng.normal(0, sd) for k, sd in (("cx", 0.004), ("cy", 0.004), ("roll", 0.012), ("yaw", 0.025))}
    blinks = set(np.nonzero(rng.random(num_frames) < 0.08)[0].tolist())
    noise_sd = rng.uniform(2.0, 8.0)
    frames = []
    for t in range(num_frames):
        expr: dict = {k: apex.get(k, 0.0) * intensity[t] for k in _KEYS}
        expr["tint"] = tuple(c * intensity[t] for c in apex.get("tint", (0, 0, 0)))
        pose = dict(pose0)
        for k, v in drift.items():
            pose[k] += v * t
        pose["blink"] = 0.15 if t in blinks else 1.0
        f = render_frame(ident, expr, pose, size).astype(np.float32)
        f += rng.normal(0, noise_sd, f.shape)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_dataset(
    out_dir: str | Path,
    train_per_class: int = 60,
    test_per_class: int = 20,
    size: int = 64,
    min_frames: int = 8,
    max_frames: int = 28,
    seed: int = 0,
    fold: int = 1,
) -> dict[str, Path]:
    """Render clips and write DFEW's layout under ``out_dir``; returns the paths.

    ``<out_dir>/frames/<5-digit id>/<00001>.jpg`` and ``<out_dir>/annotation/DFEW_set_<fold>_{train,test}.txt``
    (lines ``<authors' prefix>/<id> <num_frames> <label>``: set ``data_root`` to ``<out_dir>/frames``).
    """
    out = Path(out_dir)
    frames_dir, ann_dir = out / "frames", out / "annotation"
    frames_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clip_id = 0
    files = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(NUM_CLASSES), per_class)
        rng.shuffle(labels)
        lines = []
        for label in labels.tolist():
            clip_id += 1
            n = int(rng.integers(min_frames, max_frames + 1))
            clip = render_clip(label, n, rng, size)
            folder = frames_dir / f"{clip_id:05d}"
            folder.mkdir(exist_ok=True)
            for t, f in enumerate(clip, 1):
                Image.fromarray(f).save(folder / f"{t:05d}.jpg", quality=92)
            lines.append(f"{AUTHORS_PREFIX}/{clip_id:05d} {n} {label}\n")
        path = ann_dir / f"DFEW_set_{fold}_{split}.txt"
        path.write_text("".join(lines))
        files[split] = path
    return {"root": out, "frames": frames_dir, "annotation_dir": ann_dir, **files}
