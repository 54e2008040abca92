"""The frozen face networks StyleMask trains against, batched: identity (ArcFace), 3D (DECA encoder + FLAME).

``FaceAnalyzer`` takes the three networks as injectable components with fixed interfaces, so the same code runs
with the real networks (``build_face_analyzer("real", ...)``: common/face's IR-SE50, DECA encoder and FLAME), with
the face world's experts (``"faceworld"``: identity expert where ArcFace is, attribute expert where DECA is, the
renderer's geometry where FLAME is; ``"faceworld_random"``: the same classes with random weights) and with tiny
random stand-ins (``"tiny"``) in tests:

* identity: ``net(x [B,3,s,s] in [-1,1]) -> [B,D]`` L2-normalised, ``s = id_size`` (112 for ArcFace);
* deca: ``net(x [B,3,c,c] in [0,1]) -> dict(shape [B,S], exp [B,E], pose [B,6], cam [B,3], ...)``, ``c = deca_size``;
* flame: ``net(shape, expression, pose) -> (vertices [B,V,3], landmarks68 [B,68,3])``.

Everything runs on whole batches (the official code loops over images and runs a landmark detector on each).
The identity crop is pSp's ``[35:223, 32:220]`` of a 256 image (as fractions, so any size works), then pooled to
``id_size`` (``id_resize="pool"``: average pooling as pSp; ``"bilinear"``: antialiased bilinear resizing, as the
face-world identity expert crops its inputs). The DECA crop is common/face's
differentiable ``deca_crop`` (DECA's ``TestData`` square, 1.25x the face box): the box comes from a detector (no
gradient, as the official FAN box) or, for aligned generator output, from a fixed box (``box="fixed"``, the default
for training: faces of an FFHQ generator sit in place; ``face_box`` is FFHQ's mean box, or the face world's).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.face.align import deca_crop
from common.face.flame import axis_angle_to_euler, batch_rodrigues
from common.face.irse import Backbone

# Landmark box (left, top, right, bottom) of an FFHQ-aligned face as fractions of the image side: the mean
# 68-point box of aligned FFHQ faces (eyes at ~0.39 height, chin at ~0.88). An approximation of the per-image
# FAN box of the official code; use box="detector" for per-image boxes.
FFHQ_FACE_BOX = (0.23, 0.31, 0.77, 0.88)
PSP_ID_CROP = (35 / 256, 223 / 256, 32 / 256, 220 / 256)  # rows (top, bottom), cols (left, right)


class FaceAnalyzer(nn.Module):
    """Identity embeddings and 3D coefficients of image batches in [-1, 1] (see the module docstring).

    ``face_box``: the fixed landmark box (left, top, right, bottom as fractions of the side) of ``box="fixed"``.
    ``kornia_compat``: sample the DECA crop as kornia 0.4.1 did (the official DECA input; the face-world attribute
    expert was trained on the plain crop, so the face world turns it off). ``geometry_size``: the crop side (pixels)
    in which the 3D loss terms measure projected FLAME points (DECA: its 224 crop; default ``deca_size``).
    ``landmark_fn``: optional ``images [B,3,H,W] -> 68 landmarks [B,68,2]`` in pixels (the face world's
    attribute-expert estimate); used by the benchmarks' landmark error. ``id_resize``: how the identity crop is
    brought to ``id_size`` (``"pool"``: adaptive average pooling as pSp; ``"bilinear"``: antialiased bilinear).
    """

    def __init__(
        self,
        identity: nn.Module,
        deca: nn.Module,
        flame: nn.Module,
        id_size: int = 112,
        deca_size: int = 224,
        box: str = "fixed",
        detector: Callable[[Tensor], Tensor] | None = None,
        face_box: tuple[float, float, float, float] = FFHQ_FACE_BOX,
        kornia_compat: bool = True,
        geometry_size: int | None = None,
        landmark_fn: Callable[[Tensor], Tensor] | None = None,
        id_resize: str = "pool",
    ) -> None:
        super().__init__()
        if box not in ("fixed", "detector"):
            raise ValueError(f"box must be 'fixed' or 'detector', got {box!r}")
        if box == "detector" and detector is None:
            raise ValueError("box='detector' needs a detector callable (images in [-1,1] -> boxes [B,4] in pixels)")
        left, top, right, bottom = face_box
        if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            raise ValueError(
                f"face_box must be (left, top, right, bottom) fractions with left<right, top<bottom: {face_box}"
            )
        if id_resize not in ("pool", "bilinear"):
            raise ValueError(f"id_resize must be 'pool' or 'bilinear', got {id_resize!r}")
        self.identity_net, self.deca, self.flame = identity, deca, flame
        self.id_resize = id_resize
        self.id_size, self.deca_size, self.box = id_size, deca_size, box
        self.detector = detector
        self.face_box = tuple(float(v) for v in face_box)
        self.kornia_compat = kornia_compat
        self.geometry_size = deca_size if geometry_size is None else int(geometry_size)
        self.landmark_fn = landmark_fn

    def embed(self, images: Tensor) -> Tensor:
        """Identity embeddings ``[B,D]`` of ``images [B,3,H,W]`` in [-1,1] (pSp crop, resized to ``id_size``)."""
        _, _, h, w = images.shape
        t, b, left, r = PSP_ID_CROP
        x = images[:, :, round(t * h) : round(b * h), round(left * w) : round(r * w)]
        if self.id_resize == "bilinear":
            x = F.interpolate(
                x, size=(self.id_size, self.id_size), mode="bilinear", align_corners=False, antialias=True
            )
        else:
            x = F.adaptive_avg_pool2d(x, self.id_size)
        return self.identity_net(x)

    def deca_input(self, images: Tensor) -> Tensor:
        """DECA's crop ``[B,3,deca_size,deca_size]`` in [0,1] of ``images`` in [-1,1] (differentiable in the pixels).

        Sampling as kornia 0.4.1's ``warp_affine`` (the official pin) when ``kornia_compat``.
        Fixed mode: the ``face_box`` landmark box, cropped as DECA crops a 68-landmark box (side x1.1, then x1.25).
        Detector mode: per-image detector boxes (no gradient), cropped as DECA crops a detector box.
        """
        x01 = (images + 1) / 2
        if self.box == "fixed":
            return deca_crop(
                x01, landmarks=self.fixed_corners(images), size=self.deca_size, kornia_compat=self.kornia_compat
            )
        with torch.no_grad():
            boxes = self.detector(images.detach())
        return deca_crop(x01, boxes=boxes.to(images), size=self.deca_size, kornia_compat=self.kornia_compat)

    def fixed_corners(self, images: Tensor) -> Tensor:
        """The fixed face box of ``images [B,3,H,W]`` as two corner landmarks ``[B,2,2]`` in pixels."""
        b, _, h, w = images.shape
        left, top, right, bottom = self.face_box
        return images.new_tensor([[left * w, top * h], [right * w, bottom * h]]).expand(b, 2, 2)

    def landmarks(self, images: Tensor) -> Tensor:
        """68 landmarks ``[B,68,2]`` (pixels) of ``images`` in [-1,1] by the injected ``landmark_fn``."""
        if self.landmark_fn is None:
            raise RuntimeError("these face networks have no landmark estimator (face_models 'faceworld' has one)")
        return self.landmark_fn(images)

    def coefficients(self, images: Tensor) -> dict[str, Tensor]:
        """3D coefficients of ``images [B,3,H,W]`` in [-1,1]: DECA's dict plus ``angles`` ``[B,3]`` in degrees."""
        crops = self.deca_input(images)
        out = dict(self.deca(crops))
        for key, n in (("shape", None), ("exp", None), ("pose", 6)):
            if key not in out or out[key].ndim != 2 or (n is not None and out[key].shape[1] != n):
                raise ValueError(
                    f"3D encoder output {key!r} must be [B, {n or 'n'}], got {getattr(out.get(key), 'shape', None)}"
                )
        out["angles"] = axis_angle_to_euler(out["pose"][:, :3])
        return out

    def flame_fn(self, shape: Tensor, exp: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """FLAME decode: ``(vertices [B,V,3], landmarks68 [B,68,3])``."""
        return self.flame(shape, exp, pose)


# ------------------------------------------------------------------------------------------ tiny stand-ins
def _conv_trunk(width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, 2, 1), nn.LeakyReLU(0.2)]
        c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class TinyIdentity(nn.Module):
    """Random small CNN with ArcFace's interface: ``[B,3,s,s]`` in [-1,1] -> ``[B,dim]`` L2-normalised."""

    def __init__(self, dim: int = 64, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.trunk = _conv_trunk(width, depth)
        self.head = nn.Linear(width, dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.trunk(x)), dim=1)


class TinyDECA(nn.Module):
    """Random small CNN with the DECA encoder's interface: ``[B,3,c,c]`` in [0,1] -> dict of the 236 parameters.

    The pose head is scaled so rotations stay moderate (about +-0.3 rad), as real faces'.
    """

    SIZES = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.trunk = _conv_trunk(width, depth)
        self.head = nn.Linear(width, sum(self.SIZES.values()))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        code = self.head(self.trunk(x * 2 - 1))
        out, start = {}, 0
        for key, n in self.SIZES.items():
            out[key] = code[:, start : start + n]
            start += n
        out["pose"] = 0.3 * torch.tanh(out["pose"])
        out["light"] = out["light"].reshape(-1, 9, 3)
        return out


class TinyFLAME(nn.Module):
    """A random linear morphable model with FLAME's interface (``forward(shape, expression, pose)``).

    vertices = R(global) (template + S shape + E exp + jaw rotation of the lower face); 68 landmarks are fixed
    vertices. Bases are buffers drawn from a fixed seed; they are not trained.
    """

    def __init__(self, num_vertices: int = 300, n_shape: int = 100, n_exp: int = 50, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("template", torch.randn(num_vertices, 3, generator=g) * 0.1)
        self.register_buffer("shapedirs", torch.randn(n_shape, num_vertices, 3, generator=g) * 0.01)
        self.register_buffer("expdirs", torch.randn(n_exp, num_vertices, 3, generator=g) * 0.01)
        self.register_buffer("lower", (self.template[:, 1] < 0).float())
        self.register_buffer("landmark_index", torch.randperm(num_vertices, generator=g)[:68])

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        ns, ne = self.shapedirs.shape[0], self.expdirs.shape[0]
        v = self.template + torch.einsum("bs,svc->bvc", shape[:, :ns], self.shapedirs)
        v = v + torch.einsum("be,evc->bvc", expression[:, :ne], self.expdirs)
        jaw = batch_rodrigues(pose[:, 3:6])
        v = torch.where(self.lower[None, :, None].bool(), v @ jaw.transpose(1, 2), v)
        v = v @ batch_rodrigues(pose[:, :3]).transpose(1, 2)
        return v, v[:, self.landmark_index]


class TinyInverter(nn.Module):
    """Random small CNN with e4e's interface: ``[B,3,s,s]`` in [-1,1] -> W+ ``[B, n_latent, style_dim]``."""

    def __init__(self, n_latent: int, style_dim: int, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.n_latent, self.style_dim = n_latent, style_dim
        self.trunk = _conv_trunk(width, depth)
        self.head = nn.Linear(width, n_latent * style_dim)
        self.register_buffer("latent_avg", torch.zeros(n_latent, style_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x)).view(-1, self.n_latent, self.style_dim) + self.latent_avg


# ------------------------------------------------------------------------------------------ builders
FACE_MODELS = ("real", "tiny", "random_full", "faceworld", "faceworld_random")


def build_face_analyzer(
    kind: str = "real",
    arcface_path: str | os.PathLike | None = None,
    deca_path: str | os.PathLike | None = None,
    flame_path: str | os.PathLike | None = None,
    landmark_embedding_path: str | os.PathLike | None = None,
    box: str = "fixed",
    seed: int = 0,
) -> FaceAnalyzer:
    """The face networks of ``kind`` (one of :data:`FACE_MODELS`).

    ``"tiny"``: random stand-ins (32 px crops; no files). ``"random_full"``: randomly initialised networks of the
    real sizes (IR-SE50 at 112 px, a ResNet-50 DECA encoder at 224 px, 5023 vertices), for benchmarks. ``"real"``:
    ArcFace IR-SE50, DECA encoder and FLAME from common/face, resolved through common/weights (a missing file raises
    one message naming it). ``"faceworld"``: the face world's trained experts (``arcface_path`` / ``deca_path``
    name the identity / attribute expert files, default the registry's ``faceworld_identity`` /
    ``faceworld_attributes``; the geometry model has no file), 56 px crops, the fixed face-world box, 3D terms
    measured in DECA's 224 px crop units. ``"faceworld_random"``: the same with randomly initialised experts.
    """
    if kind not in FACE_MODELS:
        raise ValueError(f"face_models must be one of {FACE_MODELS}, got {kind!r}")
    if kind.startswith("faceworld"):
        return _faceworld_analyzer(kind, arcface_path, deca_path, flame_path, landmark_embedding_path, box, seed)
    detector = _mtcnn_boxes() if box == "detector" else None
    if kind == "tiny":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return FaceAnalyzer(TinyIdentity(), TinyDECA(), TinyFLAME(seed=seed), 32, 32, box, detector)
    if kind == "random_full":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return FaceAnalyzer(
                Backbone(112, 50, 0.6, "ir_se"), _full_size_deca(), TinyFLAME(5023, seed=seed), 112, 224, box, detector
            )
    from common.face.identity import load_arcface
    from common.weights import resolve

    try:  # DECA encoder and FLAME come with issue "common/face"
        from common.face.deca import load_deca_encoder
        from common.face.flame import FLAME, load_flame_model
    except ImportError as exc:  # pragma: no cover - depends on the shared package's progress
        raise ImportError(f"real face networks need common.face.deca and common.face.flame ({exc})") from exc
    arc = load_arcface(arcface_path)
    deca = load_deca_encoder(resolve("deca_model", deca_path))
    flame = FLAME(
        load_flame_model(resolve("flame_generic_model", flame_path)),
        resolve("flame_landmark_embedding", landmark_embedding_path),
    )
    return FaceAnalyzer(arc, deca, flame, 112, 224, box, detector)


def _faceworld_analyzer(
    kind: str,
    identity_path: str | os.PathLike | None,
    attributes_path: str | os.PathLike | None,
    flame_path: str | os.PathLike | None,
    landmark_embedding_path: str | os.PathLike | None,
    box: str,
    seed: int,
) -> FaceAnalyzer:
    from common.face import faceworld_experts as fwe

    if flame_path is not None or landmark_embedding_path is not None:
        raise ValueError(
            f"face_models={kind!r}: the face world's geometry model has no file; "
            "drop flame_path / landmark_embedding_path"
        )
    if box != "fixed":
        raise ValueError(f"face_models={kind!r} takes deca_box 'fixed' (the face-world box), got {box!r}")
    if kind == "faceworld":
        identity, attributes = (
            fwe.load_faceworld_identity(identity_path),
            fwe.load_faceworld_attributes(attributes_path),
        )
    else:
        if identity_path is not None or attributes_path is not None:
            raise ValueError("face_models='faceworld_random' builds random experts: drop arcface_path/deca_path")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            identity, attributes = fwe.FaceWorldIdentity().freeze(), fwe.FaceWorldAttributes().freeze()
    flame = fwe.FaceWorldFLAME()

    def landmark_fn(images: Tensor) -> Tensor:
        lm = fwe.estimate_landmarks(attributes, images, flame)
        # a first estimate that collapses to a point (random experts, garbage images) leaves the refining crop no
        # size: those images keep the estimate from the fixed box
        bad = ~torch.isfinite(lm).flatten(1).all(1)
        if bad.any():
            lm = torch.where(bad[:, None, None], fwe.estimate_landmarks(attributes, images, flame, refine=0), lm)
        return lm

    size = fwe.INPUT_SIZE
    # geometry_size 224: FaceWorldFLAME is in FLAME-like units, so projecting into a 224 crop gives the official
    # code's pixel units and the paper's loss weights keep their balance (a 56 px crop would shrink the 3D terms 4x).
    return FaceAnalyzer(
        identity,
        attributes,
        flame,
        size,
        size,
        "fixed",
        None,
        face_box=fwe.FACEWORLD_FACE_BOX,
        kornia_compat=False,
        geometry_size=224,
        landmark_fn=landmark_fn,
        id_resize="bilinear",
    )


class _ResNet50Coefficients(nn.Module):
    """DECA's E_flame shape: torchvision ResNet-50 trunk (random) + MLP 2048-512-236 split like ``TinyDECA``."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.trunk = resnet50(weights=None)
        self.trunk.fc = nn.Identity()
        self.head = nn.Sequential(nn.Linear(2048, 512), nn.ReLU(), nn.Linear(512, sum(TinyDECA.SIZES.values())))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        code = self.head(self.trunk(x))
        out, start = {}, 0
        for key, n in TinyDECA.SIZES.items():
            out[key] = code[:, start : start + n]
            start += n
        out["pose"] = 0.3 * torch.tanh(out["pose"])
        return out


def _full_size_deca() -> nn.Module:
    try:
        from common.face.deca import DECAEncoder

        return DECAEncoder()
    except ImportError:  # common/face's DECA encoder not there yet: same-size ResNet-50 stand-in
        return _ResNet50Coefficients()


def _mtcnn_boxes() -> Callable[[Tensor], Tensor]:
    """Batched MTCNN boxes for images in [-1,1] (common/face/detect); a frame with no face raises NoFaceError."""
    from common.face.detect import FaceDetector

    det = FaceDetector()

    def boxes(images: Tensor) -> Tensor:
        arr = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        found = det.detect_batch(list(arr), require=True)
        return torch.tensor([list(d.box) for d in found], dtype=torch.float32, device=images.device)

    return boxes
