"""DECA's coarse encoder ``E_flame``: ResNet-50 -> 2048 -> 1024 -> 236 FLAME parameters.

Keys match ``deca_model.tar['E_flame']``: ``encoder.{conv1,bn1,layer1..layer4}.*`` (torchvision ResNet-50
names, no fc) and ``layers.{0,2}.*`` (the regressor). Input: ``[B,3,224,224]`` RGB in [0,1] (DECA's crop,
see ``common.face.align.deca_crop``), no normalisation. Output split in DECA's order:
shape 100, tex 50, exp 50, pose 6 (global axis-angle 3, jaw 3), cam 3 (scale, tx, ty), light 27 (9x3 SH).
"""

from __future__ import annotations

import os

import torchvision
from torch import Tensor, nn

from common.face.checkpoint import CheckpointError, load_checkpoint, load_state_dict_strict
from common.weights import resolve

__all__ = ["DECA_PARAM_SIZES", "DECAEncoder", "estimate_deca", "load_deca_encoder", "split_deca_params"]

DECA_PARAM_SIZES: dict[str, int] = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}
NUM_DECA_PARAMS = sum(DECA_PARAM_SIZES.values())  # 236


def split_deca_params(params: Tensor) -> dict[str, Tensor]:
    """``[B,236]`` -> dict of ``[B,n]`` tensors in DECA's order (light kept flat ``[B,27]``; DECA views it 9x3)."""
    if params.ndim != 2 or params.shape[1] != NUM_DECA_PARAMS:
        raise ValueError(f"expected DECA parameters [B,{NUM_DECA_PARAMS}], got {tuple(params.shape)}")
    out, start = {}, 0
    for name, n in DECA_PARAM_SIZES.items():
        out[name] = params[:, start : start + n]
        start += n
    return out


class _ResNet50Trunk(nn.Module):
    """torchvision ResNet-50 without avgpool/fc (DECA's ``resnet.ResNet`` has the same parameter names)."""

    def __init__(self) -> None:
        super().__init__()
        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DECAEncoder(nn.Module):
    """DECA ``E_flame``. ``forward(img) -> dict`` of parameters; ``features(img) -> [B,2048,7,7]`` (layer4,
    HyperReenact's pose code); ``params(img) -> [B,236]``. Gradients flow to the image."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _ResNet50Trunk()
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, NUM_DECA_PARAMS))

    def _check(self, img: Tensor) -> None:
        if img.ndim != 4 or img.shape[1:] != (3, 224, 224):
            raise ValueError(f"DECAEncoder expects [B,3,224,224] images in [0,1], got {tuple(img.shape)}")

    def features(self, img: Tensor) -> Tensor:
        self._check(img)
        return self.encoder(img)

    def params(self, img: Tensor) -> Tensor:
        return self.params_from_features(self.features(img), flat=True)

    def params_from_features(self, fmap: Tensor, flat: bool = False) -> Tensor | dict[str, Tensor]:
        """Parameters from a ``features`` map ``[B,2048,7,7]`` (one ResNet pass for both, as HyperReenact):
        the split dict, or the flat ``[B,236]`` with ``flat=True``."""
        # DECA pools with AvgPool2d(7) on the 7x7 map: a global mean at 224 px.
        params = self.layers(fmap.mean((2, 3)))
        return params if flat else split_deca_params(params)

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        return split_deca_params(self.params(img))


def load_deca_encoder(path: str | os.PathLike | None = None, freeze: bool = True) -> DECAEncoder:
    """``DECAEncoder`` with ``E_flame`` from ``deca_model.tar`` (registry ``deca_model``), loaded strictly.

    The file is read with ``torch.load(weights_only=True)``; a bare ``E_flame`` state dict is accepted too.
    ``freeze``: eval mode and no parameter gradients (the image still gets gradients).
    """
    p = resolve("deca_model", path)
    ckpt = load_checkpoint(p, "DECA checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{p}: expected a dict with 'E_flame', got {type(ckpt).__name__}")
    if "E_flame" in ckpt:
        state = ckpt["E_flame"]
    elif any(k.startswith("encoder.") for k in ckpt):
        state = ckpt
    else:
        raise CheckpointError(f"{p}: no 'E_flame' entry (top-level keys: {sorted(ckpt)[:10]})")
    net = DECAEncoder()
    load_state_dict_strict(net, state, p)
    if freeze:
        net.eval()
        for q in net.parameters():
            q.requires_grad_(False)
    return net


def estimate_deca(
    encoder: DECAEncoder,
    images: Tensor,
    landmarks: Tensor | None = None,
    boxes: Tensor | None = None,
    input_range: str = "[-1,1]",
    kornia_compat: bool = False,
) -> dict[str, Tensor]:
    """DECA parameters of full images, as StyleMask's ``extract_DECA_params`` (crop, encode, Euler angles).

    ``images [B,3,H,W]`` in [-1,1] (or [0,1] with ``input_range="[0,1]"``); the face of each image given
    by 68 landmarks ``[B,68,2]`` or detector boxes ``[B,4]`` (see ``deca_crop``). Returns the parameter
    dict plus ``euler [B,3]`` (yaw, pitch, roll degrees) and ``crop [B,3,224,224]``. Differentiable in the
    images. Images without a face must be filtered out by the caller (the official code fed zeros onward).
    ``kornia_compat``: the official crop's sub-pixel sampling (see ``deca_crop``).
    """
    from common.face.align import deca_crop
    from common.face.flame import axis_angle_to_euler

    if input_range not in ("[-1,1]", "[0,1]"):
        raise ValueError(f"input_range must be '[-1,1]' or '[0,1]', got {input_range!r}")
    x = (images + 1) / 2 if input_range == "[-1,1]" else images
    crop = deca_crop(x, landmarks=landmarks, boxes=boxes, size=224, kornia_compat=kornia_compat)
    out = encoder(crop)
    out["euler"] = axis_angle_to_euler(out["pose"][:, :3])
    out["crop"] = crop
    return out
