"""Identity networks: ArcFace IR-SE-50 (``model_ir_se50.pth``) and facenet-pytorch's InceptionResnetV1.

Images are RGB in [-1, 1]. Two crop conventions for the identity loss / CSIM:

* ``"psp"``: pSp/e4e/StyleMask's IDLoss on FFHQ-aligned images: pool to 256x256 when the input is another
  size, take rows 35:223 and columns 32:220, average-pool to 112x112.
* ``"five_point"``: ArcFace five-point similarity alignment to 112x112 from landmarks (HyperReenact's
  csim.py; ``template="hyperreenact"`` reproduces its wider template).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.face.align import arcface_align
from common.face.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict, strip_prefix
from common.face.irse import Backbone
from common.weights import resolve

__all__ = ["ArcFace", "FaceNetIdentity", "IdentityLoss", "load_arcface", "psp_id_crop"]


def psp_id_crop(images: Tensor) -> Tensor:
    """pSp's identity crop: ``[B,3,H,W]`` in [-1,1] (FFHQ-aligned) -> ``[B,3,112,112]``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B,3,H,W], got {tuple(images.shape)}")
    if images.shape[-2:] != (256, 256):
        images = F.adaptive_avg_pool2d(images, (256, 256))
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112))


def load_arcface(path: str | os.PathLike | None = None, mode: str = "ir_se", num_layers: int = 50) -> Backbone:
    """ArcFace backbone with ``model_ir_se50.pth`` loaded strictly (registry name ``arcface_ir_se50``).

    Accepts a plain state dict (TreB1eN / pSp) or one under the ``facenet.`` prefix (HyperReenact's wrapper).
    Returned in eval mode with gradients disabled on its parameters (inputs still get gradients).
    """
    p = resolve("arcface_ir_se50", path)
    state = load_checkpoint(p, "ArcFace weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and state and all(k.startswith("facenet.") for k in state):
        state = strip_prefix(state, "facenet.")
    net = Backbone(112, num_layers, 0.6, mode)
    load_state_dict_strict(net, state, p)
    return _freeze(net)


def _freeze(net: nn.Module) -> nn.Module:
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    return net


class ArcFace(nn.Module):
    """Frozen ArcFace IR-SE-50. ``embed``/``forward``: ``[B,3,112,112]`` in [-1,1] -> ``[B,512]`` unit vectors;
    ``features``: ``[B,512,7,7]`` (the body output HyperReenact uses as appearance code).

    ``ArcFace(path)`` loads the weights (registry default when ``path`` is None); ``ArcFace(net=Backbone())``
    wraps a given network (tests, random weights).
    """

    def __init__(self, path: str | os.PathLike | None = None, net: Backbone | None = None) -> None:
        super().__init__()
        self.net = _freeze(net) if net is not None else load_arcface(path)

    def train(self, mode: bool = True) -> ArcFace:
        # Frozen evaluator: BatchNorm and Dropout stay in eval mode inside a training LightningModule.
        super().train(mode)
        self.net.eval()
        return self

    def embed(self, images: Tensor) -> Tensor:
        return self.net(images)

    forward = embed

    def features(self, images: Tensor) -> Tensor:
        return self.net.features(images)

    def aligned(self, images: Tensor, landmarks: Tensor, template: str = "arcface") -> Tensor:
        """Five-point aligned 112 crop of ``images`` (any size) from landmarks ``[B,5,2]`` or ``[B,68,2]``."""
        return arcface_align(images, landmarks, 112, template)


class FaceNetIdentity(nn.Module):
    """facenet-pytorch InceptionResnetV1 from a local file (registry ``facenet_vggface2``), frozen.

    ``embed(images [B,3,H,W] in [-1,1]) -> [B,512]`` unit vectors; images are resized to 160x160 and
    rescaled to facenet's fixed standardisation ``(x*255 - 127.5) / 128``. The file's ``logits.*`` head is dropped.
    """

    def __init__(self, path: str | os.PathLike | None = None, net: nn.Module | None = None) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        if net is None:
            p = resolve("facenet_vggface2", path)
            state = load_checkpoint(p, "facenet weights")
            if not isinstance(state, dict):
                raise CheckpointError(f"{p}: expected a state dict, got {type(state).__name__}")
            net = InceptionResnetV1(pretrained=None, classify=False)
            load_state_dict_strict(net, {k: v for k, v in state.items() if not k.startswith("logits.")}, p)
        self.net = _freeze(net)

    def train(self, mode: bool = True) -> FaceNetIdentity:
        super().train(mode)
        self.net.eval()
        return self

    def embed(self, images: Tensor) -> Tensor:
        if images.shape[-2:] != (160, 160):
            images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
        # [-1,1] -> (255*(x+1)/2 - 127.5)/128 = x * 127.5/128
        return self.net(images * (127.5 / 128.0))

    forward = embed


class IdentityLoss(nn.Module):
    """``mean(1 - cos(id(x), id(y)))`` with the target side detached, as pSp's IDLoss.

    ``crop="psp"``: FFHQ-aligned inputs cropped as pSp; ``crop="five_point"``: ``forward(x, y, lm_x, lm_y)``
    aligns each image with its landmarks (``lm_y`` defaults to ``lm_x``); ``crop="none"``: inputs already
    112x112 crops. ``network`` is an ``ArcFace`` or ``FaceNetIdentity`` (anything with ``embed``).
    """

    def __init__(self, network: nn.Module, crop: str = "psp", template: str = "arcface") -> None:
        super().__init__()
        if crop not in ("psp", "five_point", "none"):
            raise ValueError(f"crop must be 'psp', 'five_point' or 'none', got {crop!r}")
        self.network, self.crop, self.template = network, crop, template

    def prepare(self, images: Tensor, landmarks: Tensor | None = None) -> Tensor:
        """The crop the network sees: ``[B,3,112,112]``."""
        if self.crop == "psp":
            return psp_id_crop(images)
        if self.crop == "five_point":
            if landmarks is None:
                raise ValueError("IdentityLoss(crop='five_point') needs landmarks [B,5,2] or [B,68,2]")
            return arcface_align(images, landmarks, 112, self.template)
        return images

    def similarity(
        self, x: Tensor, y: Tensor, landmarks_x: Tensor | None = None, landmarks_y: Tensor | None = None
    ) -> Tensor:
        """Per-sample cosine ``[B]`` between the identities of ``x`` and ``y`` (gradient flows into ``x`` only)."""
        ex = self.network.embed(self.prepare(x, landmarks_x))
        with torch.no_grad():
            ey = self.network.embed(self.prepare(y, landmarks_y if landmarks_y is not None else landmarks_x))
        return F.cosine_similarity(ex, ey, dim=1)

    def forward(
        self, x: Tensor, y: Tensor, landmarks_x: Tensor | None = None, landmarks_y: Tensor | None = None
    ) -> Tensor:
        return (1 - self.similarity(x, y, landmarks_x, landmarks_y)).mean()
