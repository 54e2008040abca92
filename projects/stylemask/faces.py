"""The frozen face networks StyleMask trains against, batched: identity (ArcFace), 3D (DECA encoder + FLAME).

``FaceAnalyzer`` takes the three networks as injectable components with fixed interfaces, so the same code runs
with the real networks (``build_face_analyzer("real", ...)``: common/face's IR-SE50, DECA encoder and FLAME) and
with tiny random stand-ins (``"tiny"``) in tests and the demo:

* identity: ``net(x [B,3,s,s] in [-1,1]) -> [B,D]`` L2-normalised, ``s = id_size`` (112 for ArcFace);
* deca: ``net(x [B,3,c,c] in [0,1]) -> dict(shape [B,S], exp [B,E], pose [B,6], cam [B,3], ...)``, ``c = deca_size``;
* flame: ``net(shape, expression, pose) -> (vertices [B,V,3], landmarks68 [B,68,3])``.

Everything runs on whole batches (the official code loops over images and runs a landmark detector on each).
The identity crop is pSp's ``[35:223, 32:220]`` of a 256 image (as fractions, so any size works), then pooled to
``id_size``. The DECA crop is common/face's differentiable ``deca_crop`` (DECA's ``TestData`` square, 1.25x the
face box): the box comes from a detector (no gradient, as the official FAN box) or, for FFHQ-aligned generator
output, from a fixed box (``box="fixed"``, the default for training: faces of an FFHQ generator sit in place).
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
    """Identity embeddings and 3D coefficients of image batches in [-1, 1] (see the module docstring)."""

    def __init__(
        self,
        identity: nn.Module,
        deca: nn.Module,
        flame: nn.Module,
        id_size: int = 112,
        deca_size: int = 224,
        box: str = "fixed",
        detector: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if box not in ("fixed", "detector"):
            raise ValueError(f"box must be 'fixed' or 'detector', got {box!r}")
        if box == "detector" and detector is None:
            raise ValueError("box='detector' needs a detector callable (images in [-1,1] -> boxes [B,4] in pixels)")
        self.identity_net, self.deca, self.flame = identity, deca, flame
        self.id_size, self.deca_size, self.box = id_size, deca_size, box
        self.detector = detector

    def embed(self, images: Tensor) -> Tensor:
        """Identity embeddings ``[B,D]`` of ``images [B,3,H,W]`` in [-1,1] (pSp crop, pooled to ``id_size``)."""
        _, _, h, w = images.shape
        t, b, left, r = PSP_ID_CROP
        x = images[:, :, round(t * h) : round(b * h), round(left * w) : round(r * w)]
        return self.identity_net(F.adaptive_avg_pool2d(x, self.id_size))

    def deca_input(self, images: Tensor) -> Tensor:
        """DECA's crop ``[B,3,deca_size,deca_size]`` in [0,1] of ``images`` in [-1,1] (differentiable in the pixels).

        Sampling as kornia 0.4.1's ``warp_affine`` (the official pin), via ``kornia_compat``.
        Fixed mode: the FFHQ landmark box, cropped as DECA crops a 68-landmark box (side x1.1, then x1.25).
        Detector mode: per-image detector boxes (no gradient), cropped as DECA crops a detector box.
        """
        b, _, h, w = images.shape
        x01 = (images + 1) / 2
        if self.box == "fixed":
            left, top, right, bottom = FFHQ_FACE_BOX
            corners = torch.tensor([[left * w, top * h], [right * w, bottom * h]], device=images.device)
            return deca_crop(x01, landmarks=corners.to(images).expand(b, 2, 2), size=self.deca_size, kornia_compat=True)
        with torch.no_grad():
            boxes = self.detector(images.detach())
        return deca_crop(x01, boxes=boxes.to(images), size=self.deca_size, kornia_compat=True)

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
def build_face_analyzer(
    kind: str = "real",
    arcface_path: str | os.PathLike | None = None,
    deca_path: str | os.PathLike | None = None,
    flame_path: str | os.PathLike | None = None,
    landmark_embedding_path: str | os.PathLike | None = None,
    box: str = "fixed",
    seed: int = 0,
) -> FaceAnalyzer:
    """``"tiny"``: random stand-ins (32 px crops; no files). ``"random_full"``: randomly initialised networks of
    the real sizes (IR-SE50 at 112 px, a ResNet-50 DECA encoder at 224 px, 5023 vertices), for benchmarks. ``"real"``: ArcFace IR-SE50, DECA encoder and FLAME
    from common/face, resolved through common/weights (a missing file raises one message naming it)."""
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
    if kind != "real":
        raise ValueError(f"face_models must be 'real', 'tiny' or 'random_full', got {kind!r}")
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
