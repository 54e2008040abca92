"""Face-world experts: small networks trained on the face world's exact ground truth, with the interfaces of the
real face networks, so the GAN papers' losses and metrics run unchanged when a config selects the face world.

* :class:`FaceWorldIdentity` stands where ArcFace is: ``forward(x [B,3,56,56] in [-1,1]) -> [B,128]`` unit vectors,
  ``features(x) -> [B,C,7,7]`` (the body map HyperReenact reads), ``output_layer(fmap) -> [B,128]``;
  ``embed_images(images)`` crops any face-world image as pSp's identity loss does and embeds it.
* :class:`FaceWorldAttributes` stands where DECA's coarse encoder is: ``forward(x [B,3,56,56] in [0,1])`` (DECA's
  crop, ``common.face.align.deca_crop``) -> dict ``shape`` (geometry, ``[B, SHAPE_DIM]``), ``tex``, ``exp``
  (``[B, 8]``), ``pose`` ``[B, 6]`` (global axis-angle in FLAME's convention + jaw), ``cam`` (DECA's orthographic
  ``(scale, tx, ty)`` of the crop), ``angles`` (yaw, pitch, roll in degrees); ``features`` / ``params_from_features``.
* :class:`FaceWorldFLAME` stands where FLAME is: ``forward(shape, exp, pose) -> (vertices [B,158,3], landmarks68
  [B,68,3])``, the renderer's own differentiable geometry in FLAME-like units (model space / 8, so DECA's fixed
  camera ``(8, 0, 0)`` maps the points back onto the image plane).

Weights: ``faceworld_identity.pt`` and ``faceworld_attributes.pt`` under ``pretrained/faceworld/`` (registry names
``faceworld_identity`` / ``faceworld_attributes``), rebuilt with

    python -m common.face.faceworld_experts train identity   --out pretrained/faceworld/faceworld_identity.pt
    python -m common.face.faceworld_experts train attributes --out pretrained/faceworld/faceworld_attributes.pt
    python -m common.face.faceworld_experts evaluate          # held-out accuracy of both

(the registry's ``rebuild`` gives the exact recipe of each shipped file: the attribute expert is fine-tuned on
degraded renders, :func:`degrade`, so that it reads the generator's softer, noisier faces as it reads renders, and
then given a deeper head trained on its frozen trunk, :func:`train_attribute_head`, ``train attributes --head-only``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data import faceworld as fw
from common.face.align import deca_crop
from common.face.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
from common.face.flame import batch_rodrigues, rotation_matrix_to_axis_angle
from common.weights import resolve

__all__ = [
    "FACEWORLD_FACE_BOX",
    "FaceWorldAttributes",
    "FaceWorldFLAME",
    "FaceWorldIdentity",
    "FaceWorldPerceptual",
    "attribute_crop",
    "degrade",
    "evaluate_attributes",
    "estimate_landmarks",
    "evaluate_identity",
    "landmark_features",
    "r2_scores",
    "load_faceworld_attributes",
    "load_faceworld_identity",
    "load_faceworld_perceptual",
]

INPUT_SIZE = 56
# Mean 68-landmark box of face-world renders (left, top, right, bottom as fractions of the side): the fixed box of
# StyleMask's "fixed" DECA crop for face-world images (FFHQ's is common to the real generator).
FACEWORLD_FACE_BOX = (0.232, 0.372, 0.767, 0.863)
# pSp's identity crop (rows 35:223, cols 32:220 of a 256 image) as fractions: (top, bottom, left, right).
ID_CROP = (35 / 256, 223 / 256, 32 / 256, 220 / 256)
FORMAT = "paperlab-faceworld-expert"


# ------------------------------------------------------------------------------------------------ networks
class _Block(nn.Module):
    """Residual basic block with a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def _trunk(width: int) -> nn.Sequential:
    """56 px -> ``[B, 4*width, 7, 7]``."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        _Block(width, 2 * width, 2),
        _Block(2 * width, 4 * width, 2),
        _Block(4 * width, 4 * width, 2),
    )


def mlp_head(in_dim: int, hidden: int, depth: int, out_dim: int) -> nn.Sequential:
    """Flatten, then ``depth`` Linear+ReLU layers of width ``hidden``, then a Linear to ``out_dim`` (``depth`` 0: one
    linear layer). Keys ``1, 3, ...``: the attribute expert's ``layers`` (depth 1 is the layout of its first files)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden if depth else in_dim, out_dim))


def _check_input(x: Tensor, who: str) -> None:
    if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"{who} expects [B,3,{INPUT_SIZE},{INPUT_SIZE}] images, got {tuple(x.shape)}")


class _Frozen(nn.Module):
    """Frozen evaluators keep BatchNorm in eval mode inside a training LightningModule."""

    frozen = False

    def freeze(self) -> _Frozen:
        self.frozen = True
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(mode and not self.frozen)


class FaceWorldIdentity(_Frozen):
    """Identity expert with ArcFace's interface (see the module docstring). Images in [-1, 1]."""

    input_size = INPUT_SIZE

    def __init__(self, width: int = 24, dim: int = 128) -> None:
        super().__init__()
        self.width, self.dim = width, dim
        self.body = _trunk(width)
        c = 4 * width
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c), nn.Flatten(), nn.Linear(c * 49, dim), nn.BatchNorm1d(dim, affine=False)
        )

    def features(self, x: Tensor) -> Tensor:
        _check_input(x, "FaceWorldIdentity")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.output_layer(self.features(x)), dim=1)

    embed = forward

    @staticmethod
    def crop(images: Tensor) -> Tensor:
        """pSp's identity crop of face-world images ``[B,3,H,W]`` -> ``[B,3,56,56]`` (differentiable)."""
        _, _, h, w = images.shape
        t, b, left, r = ID_CROP
        x = images[:, :, round(t * h) : round(b * h), round(left * w) : round(r * w)]
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)

    def embed_images(self, images: Tensor) -> Tensor:
        """Unit identity embeddings ``[B, dim]`` of face-world images ``[B,3,H,W]`` in [-1, 1] (any size)."""
        return self(self.crop(images))


_HEADS = {"shape": fw.SHAPE_DIM, "tex": fw.TEXTURE_DIM, "exp": fw.EXPRESSION_DIM, "angles": 3, "cam": 3}
_ANGLE_SCALE = 20.0  # the head regresses degrees / 20
_CAM_SCALE = 8.0


class FaceWorldAttributes(_Frozen):
    """Attribute expert with DECA's coarse-encoder interface (see the module docstring). Images in [0, 1]."""

    input_size = INPUT_SIZE

    def __init__(self, width: int = 24, hidden: int = 256, depth: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"FaceWorldAttributes: depth (hidden layers of the head) must be >= 1, got {depth}")
        self.width, self.hidden, self.depth = width, hidden, depth
        self.encoder = _trunk(width)
        self.layers = mlp_head(4 * width * 49, hidden, depth, sum(_HEADS.values()))

    def features(self, x: Tensor) -> Tensor:
        _check_input(x, "FaceWorldAttributes")
        return self.encoder(x * 2 - 1)

    def raw(self, fmap: Tensor) -> dict[str, Tensor]:
        """Regression outputs in training units: shape/tex in [0,1], exp, angles / 20, cam / 8."""
        return self.split_heads(self.layers(fmap))

    @staticmethod
    def split_heads(flat: Tensor) -> dict[str, Tensor]:
        """The last layer's ``[B, sum(heads)]`` output as the named regression outputs of :meth:`raw`."""
        out, start = {}, 0
        for k, n in _HEADS.items():
            out[k] = flat[:, start : start + n]
            start += n
        return out

    def params_from_features(self, fmap: Tensor) -> dict[str, Tensor]:
        """DECA-style parameter dict from a ``features`` map (one trunk pass for both, as HyperReenact)."""
        r = self.raw(fmap)
        angles = r["angles"] * _ANGLE_SCALE
        R = fw.rotation(angles)
        mouth = r["exp"][:, fw.EXPRESSION_NAMES.index("mouth_open")].clamp(0, 1)
        jaw = torch.stack([fw.JAW_ANGLE * mouth, torch.zeros_like(mouth), torch.zeros_like(mouth)], 1)
        return {
            "shape": r["shape"],
            "tex": r["tex"],
            "exp": r["exp"],
            "pose": torch.cat([rotation_matrix_to_axis_angle(R), jaw], 1),
            "cam": r["cam"] * _CAM_SCALE,
            "angles": angles,
        }

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.params_from_features(self.features(x))


class FaceWorldFLAME(nn.Module):
    """The face world's geometry with FLAME's interface: ``(shape, exp, pose) -> (vertices, landmarks68)``.

    shape ``[B, SHAPE_DIM]`` (the geometry part of an identity, in [0, 1]), exp ``[B, 8]``, pose ``[B, 6]`` (global
    axis-angle; the jaw entries are ignored: mouth opening is ``exp``'s ``mouth_open``). Outputs are model-space
    points divided by 8: ``vertices [B, 158, 3]`` (the 68 landmarks then 90 surface points), ``landmarks [B,68,3]``.
    No parameters; differentiable in all inputs.
    """

    num_vertices = 68 + 90

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        if shape.ndim != 2 or shape.shape[1] != fw.SHAPE_DIM:
            raise ValueError(f"FaceWorldFLAME: shape must be [B, {fw.SHAPE_DIM}], got {tuple(shape.shape)}")
        if pose.ndim != 2 or pose.shape[1] not in (3, 6):
            raise ValueError(f"FaceWorldFLAME: pose must be [B, 6] (or [B, 3]), got {tuple(pose.shape)}")
        identity = torch.cat([shape, shape.new_zeros(shape.shape[0], fw.TEXTURE_DIM)], 1)
        R = batch_rodrigues(pose[:, :3])
        pts = fw.landmarks3d_model(
            identity, torch.zeros_like(pose[:, :3]), expression, with_grid=True, rotation_matrix=R
        )
        pts = pts / 8.0
        return pts, pts[:, :68]

    def landmarks3d(self, vertices: Tensor) -> Tensor:
        return vertices[:, :68]


class FaceWorldPerceptual(nn.Module):
    """An LPIPS-like distance for face-world images from the two experts' feature maps (where LPIPS is used).

    ``forward(x, y) -> [B]`` for ``x, y [B,3,H,W]`` in [-1, 1]: for the output of each residual stage of both
    experts (identity expert on pSp's identity crop, attribute expert on the fixed DECA crop), the channel vectors
    are unit-normalised per position, and the squared distance averaged over positions; the stages' terms sum
    (LPIPS's formula with unit channel weights). Frozen; gradients reach the images.
    """

    def __init__(self, identity: FaceWorldIdentity, attributes: FaceWorldAttributes) -> None:
        super().__init__()
        self.identity = identity.freeze()
        self.attributes = attributes.freeze()

    @staticmethod
    def _stages(trunk: nn.Sequential, x: Tensor) -> list[Tensor]:
        feats = []
        for layer in trunk:
            x = layer(x)
            if isinstance(layer, _Block):
                feats.append(x)
        return feats

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"FaceWorldPerceptual expects two [B,3,H,W] images, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        both = torch.cat([x, y]).clamp(-1, 1)
        feats = self._stages(self.identity.body, self.identity.crop(both))
        feats += self._stages(self.attributes.encoder, attribute_crop(both) * 2 - 1)
        total = x.new_zeros(x.shape[0])
        for f in feats:
            f = F.normalize(f, dim=1)
            fx, fy = f.chunk(2)
            total = total + (fx - fy).pow(2).sum(1).mean((1, 2))
        return total


def load_faceworld_perceptual(
    identity_path: str | os.PathLike | None = None, attributes_path: str | os.PathLike | None = None
) -> FaceWorldPerceptual:
    """:class:`FaceWorldPerceptual` over the trained experts (registry files unless paths are given)."""
    return FaceWorldPerceptual(load_faceworld_identity(identity_path), load_faceworld_attributes(attributes_path))


# ------------------------------------------------------------------------------------------------ crops
def attribute_crop(images: Tensor, landmarks: Tensor | None = None, size: int = INPUT_SIZE) -> Tensor:
    """DECA's crop of face-world images ``[B,3,H,W]`` in [-1, 1] -> ``[B,3,size,size]`` in [0, 1].

    From 68 landmarks ``[B,68,2]`` (pixels) when given, else from :data:`FACEWORLD_FACE_BOX` (the fixed box).
    """
    x01 = (images + 1) / 2
    if landmarks is None:
        b, _, h, w = images.shape
        left, top, right, bottom = FACEWORLD_FACE_BOX
        corners = images.new_tensor([[left * w, top * h], [right * w, bottom * h]])
        landmarks = corners.expand(b, 2, 2)
    return deca_crop(x01, landmarks=landmarks, size=size)


def _cam_from_crop(landmarks: Tensor, image_size: int, size: int = INPUT_SIZE) -> Tensor:
    """DECA's ``cam (s, tx, ty)`` such that FLAME-unit points project onto the crop as DECA decodes them."""
    from common.face.align import deca_crop_matrix

    m = deca_crop_matrix(landmarks=landmarks, size=size)
    S, Tx, Ty = m[:, 0, 0], m[:, 0, 2], m[:, 1, 2]
    half = image_size / 2
    s = S * half * 8 * 2 / size
    tx = ((half * S + Tx) * 2 / size - 1) / s
    ty = (size / 2 - half * S - Ty) * 2 / (s * size)
    return torch.stack([s, tx, ty], 1)


def estimate_landmarks(
    attributes: FaceWorldAttributes, images: Tensor, flame: FaceWorldFLAME | None = None, refine: int = 1
) -> Tensor:
    """68 landmarks ``[B,68,2]`` (pixels) of face-world images ``[B,3,H,W]`` in [-1, 1] by the attribute expert.

    DECA's way for the geometry: crop, regress shape/expression/pose, decode the landmarks with
    :class:`FaceWorldFLAME`. The projection differs from DECA's on purpose: the face world has one fixed
    orthographic camera (every face aligned the same way), which ``FIXED_CAM`` reproduces exactly in image space,
    so the expert's regressed crop camera (whose translation must be right to ~0.005 for a pixel, and which the
    shipped expert predicts to ~0.05) is not used. The first crop is the fixed face-world box; each of ``refine``
    further passes crops around the previous estimate. Differentiable in the images. The shipped expert on 300
    held-out renders at 64 px: 0.36 px mean error with ``refine=1`` (``benchmarks/faceworld_expert_robustness.py``;
    0.55 px before its head was retrained; the 1200-step expert shipped earlier: 0.73 px, 0.79 px with
    ``refine=0``, 12.6 px through the regressed crop camera).
    """
    from common.face.flame import orthographic_project, to_image_space
    from common.face.losses import FIXED_CAM

    flame = flame or FaceWorldFLAME()
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"estimate_landmarks: face-world images are square, got {h}x{w}")
    box = None
    for _ in range(1 + refine):
        out = attributes(attribute_crop(images, box))
        _, lm3 = flame(out["shape"], out["exp"], out["pose"])
        cam = lm3.new_tensor(FIXED_CAM).expand(b, 3)
        lm = to_image_space(orthographic_project(lm3, cam), h)[..., :2]
        box = lm.detach()
    return lm


# ------------------------------------------------------------------------------------------------ loading
def _round_to_half_(net: nn.Module) -> nn.Module:
    """Round ``net``'s floating-point weights to float16 precision in place (what the shipped file holds), so the
    accuracy printed after training is that of the file."""
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half())
    return net


def _save(net: nn.Module, kind: str, config: dict, path: str | os.PathLike, metrics: dict | None = None) -> None:
    """Write the expert file: float16 weights (loaders copy them into float32 modules), config and metrics."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half() if v.is_floating_point() else v.detach().clone() for k, v in net.state_dict().items()}
    torch.save({"format": FORMAT, "kind": kind, "config": config, "metrics": metrics or {}, "state_dict": state}, path)


def _load(kind: str, cls: type[nn.Module], path: str | os.PathLike | None) -> nn.Module:
    p = resolve(f"faceworld_{kind}", path)
    ckpt = load_checkpoint(p, f"face-world {kind} expert")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a face-world expert file (expected a dict with format={FORMAT!r})")
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{p}: holds the {ckpt.get('kind')!r} expert, not the {kind!r} expert")
    net = cls(**ckpt.get("config", {}))
    load_state_dict_strict(net, ckpt["state_dict"], p)
    return net.freeze()


def load_faceworld_identity(path: str | os.PathLike | None = None) -> FaceWorldIdentity:
    """The trained identity expert (registry ``faceworld_identity``), frozen."""
    return _load("identity", FaceWorldIdentity, path)  # type: ignore[return-value]


def load_faceworld_attributes(path: str | os.PathLike | None = None) -> FaceWorldAttributes:
    """The trained attribute expert (registry ``faceworld_attributes``), frozen."""
    return _load("attributes", FaceWorldAttributes, path)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ data
def _batch(ids: Tensor, generator: torch.Generator, size: int = 64) -> dict[str, Tensor]:
    """Renders of identities ``ids`` at random pose and expression, with their ground truth."""
    n = ids.shape[0]
    ident = fw.identity_params(ids)
    pose, expr = fw.sample_pose(n, generator), fw.sample_expression(n, generator)
    return {
        "image": fw.render(ident, pose, expr, size),
        "landmarks": fw.landmarks(ident, pose, expr, size),
        "identity": ident,
        "pose": pose,
        "expression": expr,
    }


def _jitter_affine(images: Tensor, generator: torch.Generator, scale: float, shift: float, rot_deg: float) -> Tensor:
    """Random similarity transforms of a batch (same size out; border pixels repeat)."""
    n = images.shape[0]
    s = 1 + scale * (2 * torch.rand(n, generator=generator) - 1)
    a = torch.deg2rad(rot_deg * (2 * torch.rand(n, generator=generator) - 1))
    t = shift * (2 * torch.rand(n, 2, generator=generator) - 1)
    theta = torch.stack(
        [torch.stack([s * a.cos(), -s * a.sin(), t[:, 0]], 1), torch.stack([s * a.sin(), s * a.cos(), t[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _attribute_inputs(batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """DECA crops from jittered landmark boxes (3 in 4) or the fixed face-world box (1 in 4), and each crop's box
    as two corners ``[n,2,2]`` (pixels): the camera target is that of the crop the network sees."""
    lm = batch["landmarks"]
    n, w = lm.shape[0], batch["image"].shape[-1]
    jitter = 0.04 * 64 * (2 * torch.rand(n, 1, 2, generator=generator) - 1)
    scale = 1 + 0.05 * (2 * torch.rand(n, 1, 1, generator=generator) - 1)
    centre = lm.mean(1, keepdim=True)
    lm_j = centre + (lm - centre) * scale + jitter
    crops = attribute_crop(batch["image"], lm_j)
    fixed = attribute_crop(batch["image"])
    use_fixed = torch.rand(n, generator=generator) < 0.25
    left, top, right, bottom = FACEWORLD_FACE_BOX
    fixed_box = lm.new_tensor([[left * w, top * w], [right * w, bottom * w]]).expand(n, 2, 2)
    jitter_box = torch.stack([lm_j.min(1).values, lm_j.max(1).values], 1)
    boxes = torch.where(use_fixed[:, None, None], fixed_box, jitter_box)
    return torch.where(use_fixed[:, None, None, None], fixed, crops), boxes


def degrade(
    images: Tensor, generator: torch.Generator, p: float, max_blur: float = 1.2, max_noise: float = 0.08
) -> Tensor:
    """Random image degradations of ``images [B,3,H,W]`` in [-1, 1], each sample independently: with probability
    ``p`` a Gaussian blur of standard deviation ``U(0.3, max_blur)`` pixels, and with probability ``p`` additive
    Gaussian noise of standard deviation ``U(0, max_noise)``; clamped to [-1, 1].

    Why: a generator's faces are softer and carry texture noise that clean renders never show, and an expert that
    has only seen clean renders misreads them (the shipped 3000-step attribute expert: landmarks 0.56 px on clean
    held-out renders, 1.12 px with noise of standard deviation 0.03). The experts also serve as metrics on
    generated faces, so they must read what the renders and the generator's faces have in common.
    """
    b, c, h, w = images.shape
    out = images
    blur = torch.rand(b, generator=generator) < p
    if blur.any():
        sigma = 0.3 + (max_blur - 0.3) * torch.rand(b, generator=generator)
        r = max(1, int(3 * max_blur + 0.5))
        x = torch.arange(-r, r + 1, dtype=images.dtype)
        k = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None] ** 2))
        k = torch.where(blur[:, None], k / k.sum(1, keepdim=True), (x == 0).to(images.dtype).expand(b, -1))
        k = k.repeat_interleave(c, 0)  # [B*C, 2r+1]
        flat = F.pad(out.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
        flat = F.conv2d(flat, k[:, None, None, :], groups=b * c)
        out = F.conv2d(flat, k[:, None, :, None], groups=b * c).reshape(b, c, h, w)
    noisy = torch.rand(b, generator=generator) < p
    sd = torch.where(noisy, max_noise * torch.rand(b, generator=generator), torch.zeros(b))
    out = out + sd[:, None, None, None] * torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out.clamp(-1, 1)


# ------------------------------------------------------------------------------------------------ training
def train_identity(
    steps: int = 1500,
    batch_size: int = 128,
    n_identities: int = 3000,
    lr: float = 2e-3,
    margin: float = 0.25,
    scale: float = 30.0,
    seed: int = 0,
    log_every: int = 50,
) -> FaceWorldIdentity:
    """CosFace training over ``n_identities`` train-split identities with random pose and expression."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = FaceWorldIdentity()
    head = nn.Parameter(torch.randn(n_identities, net.dim) * 0.01)
    opt = torch.optim.AdamW([*net.parameters(), head], lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(steps):
        labels = torch.randint(0, n_identities, (batch_size,), generator=g)
        batch = _batch(fw.SPLITS["train"].start + labels, g)
        x = _jitter_affine(net.crop(batch["image"]), g, 0.08, 0.06, 6.0)
        emb = F.normalize(net.output_layer(net.body(x)), dim=1)
        cos = emb @ F.normalize(head, dim=1).T
        logits = scale * (cos - margin * F.one_hot(labels, n_identities))
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            acc = (cos.argmax(1) == labels).float().mean().item()
            print(f"identity step {step:5d} loss {loss.item():.3f} train acc {acc:.3f} ({time.time() - t0:.0f} s)")
    return net.freeze()


def landmark_features(landmarks: Tensor) -> Tensor:
    """``[N, 68, 2]`` pixels -> ``[N, 136]``: centred on their mean and divided by their mean distance to it (the
    face's geometry without its position and scale)."""
    centred = landmarks - landmarks.mean(1, keepdim=True)
    scale = centred.norm(dim=2).mean(1)[:, None, None]
    return (centred / scale).flatten(1)


def _attribute_targets(batch: dict[str, Tensor], boxes: Tensor) -> dict[str, Tensor]:
    """Each head's target in training units; ``boxes [n,2,2]``: the corners of each input crop's box (its camera)."""
    ident = batch["identity"]
    return {
        "shape": ident[:, : fw.SHAPE_DIM],
        "tex": ident[:, fw.SHAPE_DIM :],
        "exp": batch["expression"],
        "angles": batch["pose"] / _ANGLE_SCALE,
        "cam": _cam_from_crop(boxes, batch["image"].shape[-1]) / _CAM_SCALE,
    }


def _regression_terms(pred: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Smooth L1 of each head's output against its target (both in training units)."""
    return {k: F.smooth_l1_loss(pred[k], targets[k], beta=0.05) for k in _HEADS}


def _attribute_loss(pred: dict[str, Tensor], batch: dict[str, Tensor], boxes: Tensor) -> dict[str, Tensor]:
    """Regression terms against :func:`_attribute_targets` of a rendered batch."""
    return _regression_terms(pred, _attribute_targets(batch, boxes))


def _attribute_total(terms: dict[str, Tensor]) -> Tensor:
    """The weighted sum of the regression terms that the attribute expert is trained on."""
    return terms["shape"] + 0.5 * terms["tex"] + 2 * terms["exp"] + 2 * terms["angles"] + 0.5 * terms["cam"]


def train_attributes(
    steps: int = 3000,
    batch_size: int = 96,
    lr: float = 2e-3,
    seed: int = 1,
    log_every: int = 50,
    landmark_weight: float = 0.0,
    degrade_p: float = 0.0,
    init: FaceWorldAttributes | None = None,
) -> FaceWorldAttributes:
    """Regression of geometry, texture, expression, pose and camera on DECA-style crops of train identities.

    ``landmark_weight > 0`` adds an auxiliary head on the hidden layer that regresses the face's 68 landmarks
    (:func:`landmark_features`): dense supervision of the geometry the expression moves. The head is used in
    training only; the saved network is the same class and file layout either way. ``degrade_p > 0`` blurs and
    adds noise to the renders (:func:`degrade`, each with that probability). ``init``: continue from this network
    (a fine-tune; the learning-rate schedule starts again).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = FaceWorldAttributes(init.width, init.hidden, init.depth) if init is not None else FaceWorldAttributes()
    if init is not None:  # a fresh module (trainable, train mode) holding the frozen one's weights
        net.load_state_dict(init.state_dict())
    aux = nn.Linear(net.hidden, 136) if landmark_weight > 0 else None
    params = [*net.parameters(), *(aux.parameters() if aux is not None else [])]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    n_train = len(fw.SPLITS["train"])
    t0 = time.time()
    for step in range(steps):
        ids = fw.SPLITS["train"].start + torch.randint(0, n_train, (batch_size,), generator=g)
        batch = _batch(ids, g)
        if degrade_p > 0:
            batch["image"] = degrade(batch["image"], g, degrade_p)
        inputs, boxes = _attribute_inputs(batch, g)
        hidden = net.layers[:-1](net.features(inputs))
        pred = net.split_heads(net.layers[-1](hidden))
        terms = _attribute_loss(pred, batch, boxes)
        loss = _attribute_total(terms)
        if aux is not None:
            terms["landmarks"] = F.smooth_l1_loss(aux(hidden), landmark_features(batch["landmarks"]), beta=0.05)
            loss = loss + landmark_weight * terms["landmarks"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            parts = " ".join(f"{k} {v.item():.4f}" for k, v in terms.items())
            print(f"attributes step {step:5d} loss {loss.item():.4f} ({parts}) ({time.time() - t0:.0f} s)")
    return net.freeze()


@torch.no_grad()
def cache_trunk_maps(
    net: FaceWorldAttributes, renders: int, generator: torch.Generator, degrade_p: float = 0.5
) -> tuple[Tensor, dict[str, Tensor]]:
    """``net``'s trunk maps of ``renders`` training crops drawn as :func:`train_attributes` draws them (degraded
    with probability ``degrade_p``): ``([renders, C, 7, 7]`` float16, each head's target ``[renders, n]``)."""
    n_train = len(fw.SPLITS["train"])
    # filled in place: one float16 copy of the maps is the peak memory (a list then a concatenation held two)
    x = torch.empty(renders, 4 * net.width, 7, 7, dtype=torch.float16)
    y = {k: torch.empty(renders, n) for k, n in _HEADS.items()}
    for start in range(0, renders, 96):
        n = min(96, renders - start)
        batch = _batch(fw.SPLITS["train"].start + torch.randint(0, n_train, (n,), generator=generator), generator)
        if degrade_p > 0:
            batch["image"] = degrade(batch["image"], generator, degrade_p)
        inputs, boxes = _attribute_inputs(batch, generator)
        x[start : start + n] = net.features(inputs)
        for k, v in _attribute_targets(batch, boxes).items():
            y[k][start : start + n] = v
    return x, y


def train_attribute_head(
    init: FaceWorldAttributes,
    depth: int = 2,
    hidden: int = 768,
    renders: int = 384_000,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 1,
    degrade_p: float = 0.5,
    log_every: int = 1,
) -> FaceWorldAttributes:
    """A new regression head of ``depth`` hidden layers of width ``hidden`` on ``init``'s frozen trunk.

    The trunk's ``features`` map (what HyperReenact's pose encoder reads) stays bit-identical, so networks trained
    on it keep working. ``renders`` training crops (drawn as :func:`train_attributes` draws them, degraded with
    probability ``degrade_p``) pass the trunk once; their ``[96, 7, 7]`` maps are kept in float16 (``renders`` x
    9.4 kB) and the head is trained on them for ``epochs`` passes with the same loss as the whole expert. The
    defaults are the shipped head's recipe (38 min on one core, 25 of them caching; README, "The expert's head").
    """
    if renders < batch_size:
        raise ValueError(f"train_attribute_head: renders ({renders}) must be at least batch_size ({batch_size})")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = FaceWorldAttributes(init.width, hidden, depth)
    net.encoder.load_state_dict(init.encoder.state_dict())
    net.encoder.requires_grad_(False)
    t0 = time.time()
    x, y = cache_trunk_maps(init, renders, g, degrade_p)
    print(f"attribute head: {renders} trunk maps cached ({time.time() - t0:.0f} s)", flush=True)
    head = net.layers
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = renders // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch, pct_start=0.1)
    for epoch in range(epochs):
        perm = torch.randperm(renders, generator=g)
        for i in range(per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            terms = _regression_terms(net.raw(x[idx].float()), {k: v[idx] for k, v in y.items()})
            loss = _attribute_total(terms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch % log_every == 0 or epoch == epochs - 1:
            parts = " ".join(f"{k} {v.item():.4f}" for k, v in terms.items())
            print(
                f"attribute head epoch {epoch:3d} loss {loss.item():.4f} ({parts}) ({time.time() - t0:.0f} s)",
                flush=True,
            )
    return net.freeze()


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_identity(
    net: FaceWorldIdentity, n_identities: int = 300, per_identity: int = 4, seed: int = 0
) -> dict[str, float]:
    """Verification on held-out (test-split) identities: ROC-AUC of cosine similarity over all pairs, and the
    true-accept rate at 1% false accepts."""
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor(list(fw.SPLITS["test"])[:n_identities]).repeat_interleave(per_identity)
    embs = torch.cat([net.embed_images(_batch(ids[i : i + 200], g)["image"]) for i in range(0, len(ids), 200)])
    sim = embs @ embs.T
    same = ids[:, None] == ids[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    scores, labels = sim[upper].numpy(), same[upper].numpy()
    neg = torch.sort(sim[upper & ~same], descending=True).values
    threshold = neg[max(0, int(0.01 * len(neg)) - 1)]
    tar = (sim[upper & same] > threshold).float().mean().item()
    return {"roc_auc": float(roc_auc_score(labels, scores)), "tar_at_far_1pct": tar}


def r2_scores(pred: Tensor, truth: Tensor) -> Tensor:
    """Per-column coefficient of determination ``1 - SSE / SST`` of ``[N, D]`` predictions, ``[D]``."""
    return 1 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)


def held_out_batches(n: int = 1000, seed: int = 0, chunk: int = 200) -> Iterator[dict[str, Tensor]]:
    """The attribute expert's held-out renders: the first ``n`` test-split identities at random pose and
    expression drawn from ``seed``, as :func:`_batch` dicts of up to ``chunk``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor(list(fw.SPLITS["test"])[:n])
    for i in range(0, n, chunk):
        yield _batch(ids[i : i + chunk], g)


@torch.no_grad()
def evaluate_attributes(net: FaceWorldAttributes, n: int = 1000, seed: int = 0, fixed_box: bool = False) -> dict:
    """Held-out accuracy: mean absolute yaw/pitch/roll error (degrees), R^2 of every expression coefficient and their
    mean, R^2 of the geometry. Crops from the true landmarks (or the fixed face-world box with ``fixed_box``)."""
    preds, truth = [], []
    for batch in held_out_batches(n, seed):
        out = net(attribute_crop(batch["image"], None if fixed_box else batch["landmarks"]))
        preds.append(out)
        truth.append(batch)
    cat = lambda items, k: torch.cat([x[k] for x in items])  # noqa: E731
    angles, pose = cat(preds, "angles"), cat(truth, "pose")
    exp, expr = cat(preds, "exp"), cat(truth, "expression")
    shape, ident = cat(preds, "shape"), cat(truth, "identity")[:, : fw.SHAPE_DIM]

    err = (angles - pose).abs().mean(0)
    exp_r2 = r2_scores(exp, expr)
    return {
        "yaw_err_deg": err[0].item(),
        "pitch_err_deg": err[1].item(),
        "roll_err_deg": err[2].item(),
        "expression_r2": {name: exp_r2[i].item() for i, name in enumerate(fw.EXPRESSION_NAMES)},
        "expression_r2_mean": exp_r2.mean().item(),
        "shape_r2_mean": r2_scores(shape, ident).mean().item(),
    }


def _format(metrics: dict, indent: str = "  ") -> str:
    """Nested metric dicts as indented lines."""
    lines = []
    for k, v in metrics.items():
        if isinstance(v, dict) and all(not isinstance(x, dict) for x in v.values()) and k != "fixed_box":
            lines.append(f"{indent}{k}: " + ", ".join(f"{n} {x:.3f}" for n, x in v.items()))
        elif isinstance(v, dict):
            lines.append(f"{indent}{k}:\n" + _format(v, indent + "  "))
        else:
            lines.append(f"{indent}{k}: {v:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train or evaluate the face-world experts (see the module docstring).")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train one expert and save it")
    tr.add_argument("expert", choices=["identity", "attributes"])
    tr.add_argument("--out", required=True, help="output file (e.g. pretrained/faceworld/faceworld_identity.pt)")
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument(
        "--landmark-weight", type=float, default=None, help="attributes: weight of the auxiliary landmark head (0: off)"
    )
    tr.add_argument(
        "--degrade", type=float, default=None, help="attributes: probability of blur and of noise per render (0: off)"
    )
    tr.add_argument("--init", default=None, help="attributes: fine-tune this expert file instead of starting afresh")
    tr.add_argument(
        "--head-only",
        action="store_true",
        help="attributes, with --init: train a new head on the init's frozen trunk (its feature map is unchanged)",
    )
    tr.add_argument("--depth", type=int, default=None, help="--head-only: hidden layers of the new head (default 2)")
    tr.add_argument("--hidden", type=int, default=None, help="--head-only: width of the new head (default 768)")
    tr.add_argument(
        "--renders", type=int, default=None, help="--head-only: training crops cached (default 384000, 3.6 GB)"
    )
    tr.add_argument("--epochs", type=int, default=None, help="--head-only: passes over them (default 8)")
    ev = sub.add_parser("evaluate", help="held-out accuracy of the registered (or given) experts")
    ev.add_argument("experts", nargs="*", metavar="{identity,attributes}", help="which experts (default: both)")
    ev.add_argument("--identity", default=None, help="identity expert file (default: the registry's)")
    ev.add_argument("--attributes", default=None, help="attribute expert file (default: the registry's)")
    args = ap.parse_args(argv)
    if args.command == "train":
        kw = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
        if args.landmark_weight is not None:
            if args.expert != "attributes":
                ap.error("--landmark-weight applies to the attribute expert only")
            kw["landmark_weight"] = args.landmark_weight
        for flag, key in (("degrade", "degrade_p"), ("init", "init")):
            if getattr(args, flag) is not None:
                if args.expert != "attributes":
                    ap.error(f"--{flag} applies to the attribute expert only")
                kw[key] = load_faceworld_attributes(args.init) if flag == "init" else getattr(args, flag)
        head_opts = {
            k: getattr(args, k) for k in ("depth", "hidden", "renders", "epochs") if getattr(args, k) is not None
        }
        if args.head_only:
            if args.expert != "attributes":
                ap.error("--head-only applies to the attribute expert only")
            if "init" not in kw:
                ap.error("--head-only needs --init (the expert whose trunk is kept)")
            if "landmark_weight" in kw or "steps" in kw:
                ap.error(
                    "--head-only trains --epochs passes over --renders crops: --steps / --landmark-weight do not apply"
                )
            kw.update(head_opts)
        elif head_opts:
            ap.error(f"--{'/--'.join(head_opts)} apply with --head-only only")
        if args.expert == "identity":
            net = _round_to_half_(train_identity(**kw))
            metrics = evaluate_identity(net)
            config = {"width": net.width, "dim": net.dim}
        else:
            net = _round_to_half_(train_attribute_head(**kw) if args.head_only else train_attributes(**kw))
            metrics = evaluate_attributes(net)
            metrics["fixed_box"] = evaluate_attributes(net, fixed_box=True)
            config = {"width": net.width, "hidden": net.hidden, "depth": net.depth}
        _save(net, args.expert, config, args.out, metrics)
        print(f"saved {args.out}")
        print(f"held-out {args.expert} accuracy:\n{_format(metrics)}")
        return
    experts = args.experts or ["identity", "attributes"]
    if set(experts) - {"identity", "attributes"}:
        ap.error(f"evaluate: unknown experts {sorted(set(experts) - {'identity', 'attributes'})}")
    if "identity" in experts:
        ident = load_faceworld_identity(args.identity)
        print(f"identity expert ({resolve('faceworld_identity', args.identity)}):\n{_format(evaluate_identity(ident))}")
    if "attributes" not in experts:
        return
    attr = load_faceworld_attributes(args.attributes)
    print(f"attribute expert ({resolve('faceworld_attributes', args.attributes)}):")
    print(_format(evaluate_attributes(attr)))
    print("  with the fixed face-world box:")
    print(_format(evaluate_attributes(attr, fixed_box=True)))


if __name__ == "__main__":
    main()
