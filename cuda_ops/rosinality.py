"""rosinality/stylegan2-pytorch's op API (``op/fused_act.py``, ``op/upfirdn2d.py``) on top of cuda_ops.

Differences from rosinality's own code, all deliberate: ``negative_slope`` is honoured on CPU too (their CPU
path hard-codes 0.2), every input rank works with the channel on dim 1, and the CUDA kernel is built on
first use rather than at import.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cuda_ops._bias_act import bias_act
from cuda_ops._upfirdn2d import upfirdn2d as _upfirdn2d


def fused_leaky_relu(
    input: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """``leaky_relu(input + bias[channel on dim 1], negative_slope) * scale`` for ``input`` [N, C, ...]."""
    return bias_act(input, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale)


class FusedLeakyReLU(nn.Module):
    """Bias (parameter ``bias`` [channel], zeros) + leaky ReLU + scale; checkpoint keys as rosinality's."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2**0.5) -> None:
        super().__init__()
        if bias:
            self.bias = nn.Parameter(torch.zeros(channel))
        else:
            self.bias = None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)


def upfirdn2d(
    input: torch.Tensor,
    kernel: torch.Tensor,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """rosinality's upfirdn2d: 2-D ``kernel`` always convolved (not correlated), gain baked into the kernel,
    ``pad=(p0, p1)`` meaning (x0, x1, y0, y1) = (p0, p1, p0, p1) (NOT NVIDIA's [x, y]); 4 values pass through."""
    if kernel.ndim != 2:
        raise ValueError(f"rosinality.upfirdn2d: kernel must be 2-D [kh, kw], got shape {tuple(kernel.shape)}")
    pad = [int(p) for p in pad]
    if len(pad) == 2:
        pad = [pad[0], pad[1], pad[0], pad[1]]
    if len(pad) != 4:
        raise ValueError(f"rosinality.upfirdn2d: pad must be (p0, p1) or (x0, x1, y0, y1), got {pad}")
    return _upfirdn2d(input, kernel, up=up, down=down, padding=pad, flip_filter=False, gain=1)
