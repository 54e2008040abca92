"""HyperReenact's full network: frozen encoders and generator around the trainable hypernetwork.

Data flow (official ``run_inference.py``): the 256 px source crop is inverted once by e4e (no ``latent_avg``);
its five-point aligned 112 px crop gives the ArcFace body[23] map (appearance, 512x7x7); each driving crop,
cropped as DECA does to 224 px, gives the DECA ResNet-50 layer4 map (pose, 2048x7x7); the hypernetwork turns
both maps into offsets ``W * (1 + delta)`` for the 13 non-ToRGB convs, and the generator renders the source
code truncated (0.7) toward a stored mean latent with its constant noise.

The encoders are injected: :class:`AppearanceEncoder` and :class:`PoseEncoder` wrap any network with the
interface of ``common.face`` 's ArcFace ``Backbone`` (``features`` + ``output_layer``) and DECA encoder, so the
tiny stand-ins below (:class:`TinyArcFace`, :class:`TinyDECA`, :class:`TinyFLAME`, :class:`TinyInverter`) run
the same code path on CPU in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.face.align import arcface_align, deca_crop
from projects.hyperreenact.hypernet import HypernetworkBlocks, deltas_for_generator


# --------------------------------------------------------------------------------------------- encoders
class AppearanceEncoder(nn.Module):
    """Frozen ArcFace on the five-point aligned crop: (embedding [B, D], body map [B, C, 7, 7]).

    ``net`` has ``features(x)`` (body output) and ``output_layer`` (as ``common.face.irse.Backbone``); images are
    [-1, 1], landmarks in pixels of the input. One pass gives both outputs (the official ``ArcFaceEncoder``).
    ``align="five_point"`` is the official alignment (the landmarks' similarity transform onto the template, at
    ``align_size``); ``align="net"`` uses the network's own ``crop(images)`` instead (the face-world identity
    expert's fixed pSp crop, on which it was trained), and the landmarks are not used.
    """

    ALIGNS = ("five_point", "net")

    def __init__(
        self, net: nn.Module, align_size: int = 112, template: str = "hyperreenact", align: str = "five_point"
    ) -> None:
        super().__init__()
        if align not in self.ALIGNS:
            raise ValueError(f"align must be one of {self.ALIGNS}, got {align!r}")
        if align == "net" and not callable(getattr(net, "crop", None)):
            raise ValueError(f"align='net' needs a network with a crop(images) method, got {type(net).__name__}")
        self.net = net
        self.align_size = align_size
        self.template = template  # HyperReenact's csim.py uses a wider template than ArcFace's
        self.align = align

    def forward(self, images: Tensor, lm5: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] in [-1, 1], lm5 [B, 5, 2] -> (embedding [B, D], map [B, C, 7, 7])."""
        if self.align == "net":
            x = self.net.crop(images)
        else:
            x = arcface_align(images, lm5, self.align_size, template=self.template)
        fmap = self.net.features(x)
        return F.normalize(self.net.output_layer(fmap), dim=1), fmap


DECA_SPLITS = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}


class PoseEncoder(nn.Module):
    """Frozen DECA coarse encoder on DECA's crop: (parameters dict, layer4 map [B, C, 7, 7]).

    ``net`` has ``features(x [B,3,S,S] in [0,1]) -> map`` and ``params_from_features(map) -> dict`` (shape, exp,
    pose, cam, ...); images are [-1, 1] and boxes (left, top, right, bottom) in pixels of the input.
    ``box_rule="detector"``: the boxes are face-detector boxes, cropped by DECA's detector rule (the official
    inference); ``"landmarks"``: the boxes are the extents of 68 landmarks, cropped by DECA's landmark rule (side
    x1.1, no shift: how the face-world attribute expert was trained).
    """

    BOX_RULES = ("detector", "landmarks")

    def __init__(
        self, net: nn.Module, crop_size: int = 224, kornia_compat: bool = True, box_rule: str = "detector"
    ) -> None:
        super().__init__()
        if box_rule not in self.BOX_RULES:
            raise ValueError(f"box_rule must be one of {self.BOX_RULES}, got {box_rule!r}")
        self.net = net
        self.crop_size = crop_size
        self.kornia_compat = kornia_compat  # the official crop samples as kornia 0.4's warp_affine
        self.box_rule = box_rule

    def forward(self, images: Tensor, boxes: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        x01 = (images.clamp(-1, 1) + 1) / 2
        if self.box_rule == "landmarks":  # the crop of a landmark set depends only on its extent: the two corners
            x = deca_crop(x01, landmarks=boxes.reshape(-1, 2, 2), size=self.crop_size, kornia_compat=self.kornia_compat)
        else:
            x = deca_crop(x01, boxes=boxes, size=self.crop_size, kornia_compat=self.kornia_compat)
        fmap = self.net.features(x)
        return self.net.params_from_features(fmap), fmap


# --------------------------------------------------------------------------------------------- tiny stand-ins
class TinyArcFace(nn.Module):
    """Stand-in with ArcFace's interface at small width: ``features`` (C x 7 x 7 from a 28 px crop),
    ``output_layer`` (to a D-dim embedding), ``forward`` (L2-normalised embedding)."""

    def __init__(self, channels: int = 16, emb_dim: int = 32) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1), nn.PReLU(channels))
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 2, 1), nn.PReLU(channels), nn.Conv2d(channels, channels, 3, 2, 1)
        )
        self.output_layer = nn.Sequential(nn.Flatten(), nn.Linear(channels * 49, emb_dim))

    def features(self, x: Tensor) -> Tensor:
        return self.body(self.input_layer(x))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.output_layer(self.features(x)), dim=1)


class TinyDECA(nn.Module):
    """Stand-in with the DECA encoder's interface: ``features`` (C x 7 x 7 from a 28 px crop in [0, 1]),
    ``params_from_features`` (pooled, MLP to shape/tex/exp/pose/cam/light), ``forward`` (parameters)."""

    def __init__(self, channels: int = 32, splits: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.splits = dict(splits or {"shape": 8, "tex": 4, "exp": 6, "pose": 6, "cam": 3, "light": 3})
        self.encoder = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels // 2, channels, 3, 2, 1), nn.ReLU()
        )
        self.layers = nn.Sequential(nn.Linear(channels, 32), nn.ReLU(), nn.Linear(32, sum(self.splits.values())))

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def params_from_features(self, fmap: Tensor) -> dict[str, Tensor]:
        out = self.layers(fmap.mean((2, 3)))
        return dict(zip(self.splits, out.split(list(self.splits.values()), dim=1)))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.params_from_features(self.features(x))


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues: axis-angle [B, 3] -> rotation [B, 3, 3]."""
    theta = aa.norm(dim=1, keepdim=True).clamp_min(1e-8)
    k = aa / theta
    kx, ky, kz = k.unbind(1)
    zero = torch.zeros_like(kx)
    kmat = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], 1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(kmat)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return eye + s * kmat + (1 - c) * kmat @ kmat


class TinyFLAME(nn.Module):
    """Stand-in for FLAME: linear shape and expression blendshapes on a random template, the global rotation
    ``pose[:, :3]`` and a jaw opening ``pose[:, 3]`` that moves the lower half; ``forward(shape, expression,
    pose) -> (vertices [B, V, 3], landmarks68 [B, 68, 3])`` like ``common.face.flame.FLAME``."""

    def __init__(self, n_shape: int = 8, n_exp: int = 6, n_verts: int = 200) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("v_template", torch.randn(n_verts, 3, generator=g) * 0.1)
        self.register_buffer("shapedirs", torch.randn(n_verts, 3, n_shape, generator=g) * 0.01)
        self.register_buffer("expdirs", torch.randn(n_verts, 3, n_exp, generator=g) * 0.01)
        self.register_buffer("lmk_index", torch.randperm(n_verts, generator=g)[:68])

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        v = self.v_template + torch.einsum("vck,bk->bvc", self.shapedirs, shape)
        v = v + torch.einsum("vck,bk->bvc", self.expdirs, expression)
        jaw = (v[..., 1:2] < 0).to(v) * pose[:, 3, None, None] * 0.05
        v = v + torch.cat([torch.zeros_like(jaw), -jaw, torch.zeros_like(jaw)], -1)
        v = v @ axis_angle_to_matrix(pose[:, :3]).transpose(1, 2)
        return v, v[:, self.lmk_index]


class TinyInverter(nn.Module):
    """Stand-in for e4e: image [B, 3, S, S] in [-1, 1] -> W+ [B, n_latent, style_dim] (no latent_avg added)."""

    def __init__(self, n_latent: int, style_dim: int, channels: int = 16) -> None:
        super().__init__()
        self.n_latent, self.style_dim = n_latent, style_dim
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 3, 2, 1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(channels * 16, n_latent * style_dim)

    def forward(self, x: Tensor) -> Tensor:
        f = F.adaptive_avg_pool2d(self.body(x), 4).flatten(1)
        return self.head(f).view(-1, self.n_latent, self.style_dim)


class TinyLPIPS(nn.Module):
    """Stand-in for LPIPS: mean squared difference of unit-normalised random conv features; ``(x, y) -> [B]``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = F.normalize(self.net(x), dim=1), F.normalize(self.net(y), dim=1)
        return ((fx - fy) ** 2).sum(1).mean((1, 2))


# --------------------------------------------------------------------------------------------- full network
class HyperReenactor(nn.Module):
    """Frozen generator, inverter and encoders plus the trainable ``hypernet`` (the official ``net.hypernet``).

    Args:
        generator: ``common.stylegan2.Generator``; the hypernet's layer table must match its
            ``conv_weight_shapes()``.
        hypernet: :class:`HypernetworkBlocks`.
        app_encoder, pose_encoder: :class:`AppearanceEncoder`, :class:`PoseEncoder`.
        inverter: e4e (image -> W+), or None when W+ codes are always given (cached).
        truncation: psi toward ``trunc_latent`` (0.7 officially; 1 disables).
        trunc_latent: [1, style_dim] mean latent (stored as a buffer, so checkpoints keep it; the official code
            draws a new random one every run).
        landmarker: optional frozen ``images [B,3,H,W] -> 68 landmarks [B,68,2]`` (pixels) of the same domain
            (the face world's attribute-expert estimate); the evaluation's landmark error uses it.
    """

    def __init__(
        self,
        generator: nn.Module,
        hypernet: HypernetworkBlocks,
        app_encoder: AppearanceEncoder,
        pose_encoder: PoseEncoder,
        inverter: nn.Module | None = None,
        truncation: float = 0.7,
        trunc_latent: Tensor | None = None,
        landmarker: nn.Module | None = None,
    ) -> None:
        super().__init__()
        shapes = generator.conv_weight_shapes()
        tuned = [s for s in hypernet.layer_table if s is not None]
        expect = [(s.out_channels, s.in_channels, s.kernel, s.kernel) for s in tuned]
        if [tuple(s) for s in shapes] != expect:
            raise ValueError(f"hypernetwork layer table {expect} does not match the generator's convs {shapes}")
        self.generator = generator
        self.hypernet = hypernet
        self.app_encoder = app_encoder
        self.pose_encoder = pose_encoder
        self.inverter = inverter
        self.landmarker = landmarker
        self.truncation = float(truncation)
        if trunc_latent is None:
            trunc_latent = torch.zeros(1, generator.style_dim)
        self.register_buffer("trunc_latent", trunc_latent.detach().clone().reshape(1, -1))

    def frozen_modules(self) -> dict[str, nn.Module]:
        """The modules that never train (everything but ``hypernet``)."""
        mods = {"generator": self.generator, "app_encoder": self.app_encoder, "pose_encoder": self.pose_encoder}
        if self.inverter is not None:
            mods["inverter"] = self.inverter
        if self.landmarker is not None:
            mods["landmarker"] = self.landmarker
        return mods

    def invert(self, source: Tensor) -> Tensor:
        """W+ [B, n_latent, style_dim] of source crops [B, 3, S, S] in [-1, 1] (e4e output as is)."""
        if self.inverter is None:
            raise RuntimeError("no inverter (e4e) was given; pass cached W+ codes")
        return self.inverter(source)

    def render(self, wplus: Tensor, f_pose: Tensor, f_app: Tensor) -> tuple[Tensor, list[Tensor | None]]:
        """Image [B, 3, S, S] from the source code and the two feature maps, with the official-indexed offsets."""
        deltas = self.hypernet(f_pose, f_app)
        image = self.generator.synthesis(
            self.truncate(wplus), noise="const", weight_deltas=deltas_for_generator(deltas)
        )
        return image, deltas

    def truncate(self, wplus: Tensor) -> Tensor:
        """The code the generator reads: ``trunc + psi * (w - trunc)`` on every W+ row (identity when psi = 1)."""
        if self.truncation == 1.0:
            return wplus
        return self.trunc_latent.unsqueeze(1) + self.truncation * (wplus - self.trunc_latent.unsqueeze(1))

    def render_plain(self, wplus: Tensor) -> Tensor:
        """The generator's image of the (truncated) code without offsets: what the inversion alone gives."""
        return self.generator.synthesis(self.truncate(wplus), noise="const")

    def forward(
        self,
        source: Tensor,
        source_lm5: Tensor,
        target: Tensor,
        target_box: Tensor,
        wplus: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Reenact ``source`` (crops [B, 3, S, S] in [-1, 1]) with the pose of ``target``.

        Returns ``image`` [B, 3, S, S], ``source_id`` (ArcFace embedding), ``target_params`` (DECA dict, flattened
        keys ``target_<name>``) and ``deltas``-free tensors only (so the dict collates).
        """
        if wplus is None:
            wplus = self.invert(source)
        source_id, f_app = self.app_encoder(source, source_lm5)
        target_params, f_pose = self.pose_encoder(target, target_box)
        image, _ = self.render(wplus, f_pose, f_app)
        out = {"image": image, "source_id": source_id}
        out.update({f"target_{k}": v for k, v in target_params.items()})
        return out


def mean_latent(generator: nn.Module, n: int = 4096, seed: int = 0) -> Tensor:
    """``generator.mean_latent(n)`` with a fixed seed (the official code draws a fresh one each run)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, generator.style_dim, generator=g).to(next(generator.parameters()).device)
    with torch.no_grad():
        return generator.style(z).mean(0, keepdim=True)


def n_official_outputs(size: int) -> int:
    """Number of modulated layers (conv + ToRGB) of a generator of ``size`` px: 20 at 256."""
    return 2 + 3 * (int(math.log2(size)) - 2)


def build_tiny_generator(
    size: int = 32, style_dim: int = 32, n_mlp: int = 2, channel_max: int = 32, seed: int = 0
) -> nn.Module:
    """A small random ``common.stylegan2.Generator`` (same class as the real one), reproducible from ``seed``."""
    from common.stylegan2.generator import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=1, channel_max=channel_max)
