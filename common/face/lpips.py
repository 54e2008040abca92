"""LPIPS (the ``lpips`` package, v0.1 linear heads from its wheel) with the trunk read from a local file.

The package would download torchvision's trunk (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``);
here it is built with ``pnet_rand=True`` and the trunk's ``features.*`` weights are loaded from the
registry file (``lpips_alexnet_backbone`` / ``lpips_vgg16_backbone``) with ``weights_only=True``.
Inputs are RGB in [-1, 1] (the official StyleMask/HyperReenact code fed [0,255]: a bug, not copied).
"""

from __future__ import annotations

import os
import re
import warnings

import torch
from torch import Tensor, nn

from common.checkpoint import check_finite
from common.face.checkpoint import CheckpointError, load_checkpoint
from common.weights import resolve

__all__ = ["LPIPS", "LPIPS_BACKBONES"]

# Inputs beyond this magnitude are in the wrong range (for example 0-255), not a generator's overshoot.
RANGE_LIMIT = 4.0
LPIPS_BACKBONES = {"alex": "lpips_alexnet_backbone", "vgg": "lpips_vgg16_backbone"}


class LPIPS(nn.Module):
    """Frozen LPIPS distance. ``forward(x, y) -> [B]`` for ``x, y [B,3,H,W]`` in [-1, 1] (clamped there;
    gradients flow to the inputs inside the range).

    ``backbone_path``: the torchvision trunk file (registry default when None). ``random_backbone=True``
    keeps a random trunk (tests only: the numbers mean nothing).
    """

    def __init__(
        self, net: str = "alex", backbone_path: str | os.PathLike | None = None, random_backbone: bool = False
    ):
        super().__init__()
        import lpips

        if net not in LPIPS_BACKBONES:
            raise ValueError(f"net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
        with warnings.catch_warnings():  # torchvision's deprecated `pretrained=` argument, used inside lpips
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
        if not random_backbone:
            path = resolve(LPIPS_BACKBONES[net], backbone_path)
            self._load_trunk(load_checkpoint(path, "LPIPS backbone"), path)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _load_trunk(self, state: object, path: os.PathLike) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a torchvision state dict, got {type(state).__name__}")
        trunk = self.model.net
        new = {}
        missing, shapes = [], []
        for name, param in trunk.state_dict().items():
            m = re.fullmatch(r"slice\d+\.(\d+)\.(.+)", name)
            key = f"features.{m.group(1)}.{m.group(2)}"
            if key not in state:
                missing.append(key)
            elif state[key].shape != param.shape:
                shapes.append(f"{key}: file {tuple(state[key].shape)} vs model {tuple(param.shape)}")
            else:
                new[name] = state[key]
        if missing or shapes:
            raise CheckpointError(
                f"{path}: not a torchvision trunk for LPIPS: missing {missing[:6]}, shape mismatches {shapes[:6]}"
            )
        check_finite(new, path)
        trunk.load_state_dict(new, strict=True)

    def train(self, mode: bool = True) -> LPIPS:
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two [B,3,H,W] images of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        with torch.no_grad():
            lo, hi = torch.minimum(x.min(), y.min()), torch.maximum(x.max(), y.max())
        if lo < -RANGE_LIMIT or hi > RANGE_LIMIT:
            raise ValueError(
                f"LPIPS expects images in [-1,1], got values in [{lo.item():.3g}, {hi.item():.3g}] (0-255 images?)"
            )
        # Generators overshoot [-1, 1] a little; LPIPS measures the displayable image, as saved to disk.
        return self.model(x.clamp(-1, 1), y.clamp(-1, 1)).flatten()
