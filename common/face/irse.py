"""ArcFace IR / IR-SE backbones (InsightFace, as in TreB1eN's InsightFace_Pytorch and pSp's ``model_irse.py``).

Module and parameter names follow the official code so that ``model_ir_se50.pth`` loads strictly:
``input_layer.{0,1,2}``, ``body.N.shortcut_layer.{0,1}``, ``body.N.res_layer.{0..5}`` (IR-SE: index 5 is the
squeeze-excitation module with ``fc1``/``fc2``), ``output_layer.{0,3,4}``.

Input convention: RGB in [-1, 1] (``(x - 0.5) / 0.5``), 112x112, aligned face.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "IR_UNITS",
    "IR_WIDTHS",
    "Backbone",
    "BlockSpec",
    "BottleneckIR",
    "BottleneckIRSE",
    "SEModule",
    "build_body",
    "get_blocks",
]


class BlockSpec(NamedTuple):
    """One bottleneck unit: input channels, output channels, stride."""

    in_channel: int
    depth: int
    stride: int


def _stage(in_channel: int, depth: int, num_units: int, stride: int = 2) -> list[BlockSpec]:
    return [BlockSpec(in_channel, depth, stride)] + [BlockSpec(depth, depth, 1) for _ in range(num_units - 1)]


IR_UNITS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
IR_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)


def get_blocks(
    num_layers: int = 50, units: Sequence[int] | None = None, widths: Sequence[int] | None = None
) -> list[list[BlockSpec]]:
    """Stage layout: four stages, the first unit of each with stride 2 (the input of stage 1 has ``widths[0]``
    channels, the stem's width).

    Default: IR-50/100/152 (``units`` from ``num_layers``, widths 64/128/256/512, the released layout). ``units``
    (4 unit counts, overriding ``num_layers``) and ``widths`` (4 channel counts) build smaller bodies, e.g. for
    the face world's 64 px encoder.
    """
    if units is None:
        if num_layers not in IR_UNITS:
            raise ValueError(f"num_layers must be one of {sorted(IR_UNITS)}, got {num_layers}")
        units = IR_UNITS[num_layers]
    widths = IR_WIDTHS if widths is None else widths
    if len(units) != 4 or any(int(u) < 1 for u in units):
        raise ValueError(f"units must be 4 positive unit counts (one per stage), got {tuple(units)}")
    if len(widths) != 4 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must be 4 positive channel counts (one per stage), got {tuple(widths)}")
    ins = (widths[0], *widths[:3])
    return [_stage(int(c), int(d), int(n)) for c, d, n in zip(ins, widths, units)]


class SEModule(nn.Module):
    """Squeeze-excitation with 1x1 convolutions (keys ``fc1.weight``, ``fc2.weight``; no biases).

    The bottleneck has ``channels // reduction`` channels (at least 1, for narrow bodies below 16 channels).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


def _shortcut(in_channel: int, depth: int, stride: int) -> nn.Module:
    if in_channel == depth:
        # Identity with subsampling: a 1x1 max-pool of the given stride (no parameters), as the official code.
        return nn.MaxPool2d(1, stride)
    return nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))


def _ir_branch(in_channel: int, depth: int, stride: int) -> list[nn.Module]:
    """The IR residual branch (``res_layer.0-4``): BN-Conv3x3-PReLU-Conv3x3(stride)-BN."""
    return [
        nn.BatchNorm2d(in_channel),
        nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
        nn.PReLU(depth),
        nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
        nn.BatchNorm2d(depth),
    ]


class BottleneckIR(nn.Module):
    """IR unit: BN-Conv3x3-PReLU-Conv3x3(stride)-BN plus shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        self.res_layer = nn.Sequential(*_ir_branch(in_channel, depth, stride))

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(nn.Module):
    """IR-SE unit: the IR residual branch followed by squeeze-excitation (``res_layer.5``)."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        self.res_layer = nn.Sequential(*_ir_branch(in_channel, depth, stride), SEModule(depth, 16))

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def build_body(
    num_layers: int, mode: str, units: Sequence[int] | None = None, widths: Sequence[int] | None = None
) -> nn.Sequential:
    """The bottleneck units of :func:`get_blocks` as one ``nn.Sequential`` (IR-50: keys ``body.0`` ... ``body.23``)."""
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
    unit = BottleneckIR if mode == "ir" else BottleneckIRSE
    return nn.Sequential(*[unit(*spec) for stage in get_blocks(num_layers, units, widths) for spec in stage])


class Backbone(nn.Module):
    """ArcFace IR(-SE) backbone: ``forward(x [B,3,S,S] in [-1,1]) -> [B,512]`` L2-normalised embedding.

    ``input_size`` is 112 (output map 7x7) or 224 (14x14). ``features(x)`` returns the body output
    ``[B,512,S/16,S/16]`` (512x7x7 at 112 px), the map HyperReenact uses as appearance code.
    """

    def __init__(
        self,
        input_size: int = 112,
        num_layers: int = 50,
        drop_ratio: float = 0.6,
        mode: str = "ir_se",
        affine: bool = True,
    ) -> None:
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}")
        self.input_size = input_size
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = build_body(num_layers, mode)
        spatial = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * spatial * spatial, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ArcFace Backbone expects [B,3,H,W] images, got shape {tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """Body output: ``[B,512,H/16,W/16]`` (512x7x7 for 112x112 input)."""
        self._check(x)
        return self.body(self.input_layer(x))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"ArcFace Backbone built for {self.input_size}x{self.input_size} input, got {tuple(x.shape[-2:])}"
            )
        return F.normalize(self.output_layer(self.features(x)), dim=1)
