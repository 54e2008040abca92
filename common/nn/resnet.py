"""ResNet backbones on torchvision's blocks, with a CIFAR stem, a width option and explicit stage outputs.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4``; no ``fc``), so
torchvision checkpoints load directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from common.checkpoint import CheckpointError, check_finite, describe, read_checkpoint

STAGES = ("layer1", "layer2", "layer3", "layer4")
_ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class ResNetBackbone(nn.Module):
    """ResNet without its classifier.

    Args:
        arch: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        cifar_stem: 3x3 stride-1 ``conv1`` and no max-pool (for 32 px and smaller inputs).
        in_channels: input channels (1 for grey images).
        width: channels of the first stage (64 is torchvision's; the others double).
        weights_path: a torchvision state dict to load (``fc.*`` ignored; a ``conv1`` of another
            shape is skipped with a warning).

    ``forward``: ``[B, C, H, W] -> [B, out_dim]`` (global average pool of ``layer4``).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        cifar_stem: bool = False,
        in_channels: int = 3,
        width: int = 64,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose from {sorted(_ARCHS)}")
        block, layers = _ARCHS[arch]
        self.arch, self.cifar_stem = arch, cifar_stem
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        self._inplanes = width
        self.stage_channels: dict[str, int] = {}
        for i, (name, n_blocks) in enumerate(zip(STAGES, layers)):
            planes = width * 2**i
            setattr(self, name, self._make_layer(block, planes, n_blocks, stride=1 if i == 0 else 2))
            self.stage_channels[name] = planes * block.expansion
        self.out_dim = self.stage_channels["layer4"]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if weights_path is not None:
            self.load_torchvision(weights_path)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        layers += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def load_torchvision(self, path: str | Path) -> None:
        """Load a torchvision ResNet state dict (``fc`` dropped; mismatching ``conv1`` skipped)."""
        state = read_checkpoint(path, "torchvision ResNet weights")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a torchvision ResNet state dict, got {describe(state)}")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        check_finite(state, path)
        own = self.state_dict()
        if "conv1.weight" in state and state["conv1.weight"].shape != own["conv1.weight"].shape:
            warnings.warn(
                f"{path}: conv1 {tuple(state['conv1.weight'].shape)} does not fit this stem "
                f"{tuple(own['conv1.weight'].shape)}; conv1 stays randomly initialised",
                stacklevel=2,
            )
            state = {k: v for k, v in state.items() if k != "conv1.weight"}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "conv1.weight"]
        if missing or unexpected:
            raise ValueError(
                f"{path}: keys do not match {self.arch}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def forward_stages(self, x: Tensor, stages: Sequence[str] = ("layer4",)) -> dict[str, Tensor]:
        """Feature maps of the named stages, computing only as deep as the deepest one asked."""
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
        deepest = max(STAGES.index(s) for s in stages)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        for name in STAGES[: deepest + 1]:
            x = getattr(self, name)(x)
            if name in stages:
                out[name] = x
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x, ("layer4",))["layer4"].mean(dim=(2, 3))
