"""MaskCon's encoder: a backbone (ResNet, or a small CNN for the bundled digits) and a two-layer projector."""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from common.nn.heads import MLPHead
from common.nn.resnet import ResNetBackbone


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'bn', 'gn' or 'none', got {kind!r}")


class SmallConvNet(nn.Module):
    """Two 3x3 conv blocks (norm, ReLU, 2x2 max-pool) and a linear layer: ``[B, C, H, W] -> [B, out_dim]``.

    The encoder of the spec's CPU digits experiment. ``norm="gn"`` or ``"none"`` makes every sample's feature
    independent of the rest of the batch (used by the DDP test, where BatchNorm statistics differ per rank).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, out_dim: int = 128, norm: str = "bn") -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            _norm2d(norm, width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            _norm2d(norm, 2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(3),
        )
        self.fc = nn.Linear(2 * width * 9, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))


def build_backbone(
    arch: str,
    cifar_stem: bool,
    in_channels: int,
    width: int,
    norm: str = "bn",
    weights_path: str | Path | None = None,
) -> nn.Module:
    """``smallcnn`` or a torchvision-style ResNet (``resnet18``, ``resnet34``, ``resnet50``); has ``.out_dim``."""
    if arch == "smallcnn":
        if weights_path is not None:
            raise ValueError("smallcnn has no pretrained weights")
        return SmallConvNet(in_channels, width, out_dim=4 * width, norm=norm)
    if norm != "bn":
        raise ValueError(f"ResNet backbones use BatchNorm; norm={norm!r} is only for smallcnn")
    return ResNetBackbone(arch, cifar_stem=cifar_stem, in_channels=in_channels, width=width, weights_path=weights_path)


class MaskConNet(nn.Module):
    """Backbone + projector (Linear, ReLU, Linear; no BN, as the official code).

    ``forward(x [B, C, H, W]) -> (feature [B, out_dim], embedding [B, dim] L2-normalised)``. Retrieval uses the
    backbone feature; the loss uses the embedding.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        cifar_stem: bool = True,
        in_channels: int = 3,
        width: int = 64,
        proj_hidden: int = 512,
        dim: int = 256,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(arch, cifar_stem, in_channels, width, norm)
        self.projector = MLPHead(self.backbone.out_dim, proj_hidden, dim, num_layers=2, hidden_bn=False)

    @property
    def out_dim(self) -> int:
        return int(self.backbone.out_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.backbone(x)
        return feat, F.normalize(self.projector(feat), dim=1)
