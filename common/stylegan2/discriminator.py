"""StyleGAN2 discriminator (rosinality architecture and key names): residual blocks, blur downsampling, minibatch stddev.

``Discriminator(size, channel_multiplier=2)`` has exactly the ``state_dict`` of rosinality's ``Discriminator`` (the
``d`` of a training checkpoint loads with ``strict=True``). ``D(images [B, 3, size, size]) -> logits [B, 1]``.

Layout (``res`` from ``size`` down to 8, ``C[res]`` the generator's widths)::

    convs.0                 ConvLayer(3, C[size], 1)               fromRGB: EqualConv2d + FusedLeakyReLU
    convs.k (k = 1..)       ResBlock(C[res], C[res/2])             conv1 3x3; conv2 = Blur + 3x3 stride 2;
                                                                   skip = Blur + 1x1 stride 2 (no bias, linear);
                                                                   (conv2 + skip) / sqrt(2)
    minibatch stddev        group min(B, 4), 1 feature             one extra channel
    final_conv              ConvLayer(C[4] + 1, C[4], 3)
    final_linear            EqualLinear(C[4]*16, C[4], lrelu), EqualLinear(C[4], 1)

Beyond rosinality: ``channel_max`` and ``channel_base`` (as the generator's) for small models; the defaults keep
rosinality's layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.stylegan2.generator import generator_channels
from common.stylegan2.layers import Blur, EqualLinear
from cuda_ops.rosinality import FusedLeakyReLU


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate: weight ``randn`` used as ``W / sqrt(in * k * k)``; bias zeros."""

    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; rosinality's keys (``0.kernel``, ``0/1.weight``, ``1/2.bias``).

    ``downsample``: blur with the FIR ``blur_kernel`` then a stride-2 convolution (no padding). With ``activate``
    the bias lives in the activation (``FusedLeakyReLU``), else in the convolution when ``bias``.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channel, out_channel, kernel_size, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual block halving the resolution: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def minibatch_stddev(x: Tensor, group_size: int = 4, num_features: int = 1) -> Tensor:
    """Append ``num_features`` channels of the standard deviation across groups of samples (StyleGAN's MBSTD).

    ``x [B, C, H, W] -> [B, C + num_features, H, W]``. Groups have ``G = min(B, group_size)`` members; sample ``n``
    is grouped with the samples ``n mod (B / G)`` (rosinality's and NVIDIA's grouping), so ``B`` must be a multiple
    of ``G``. Per group and feature: sqrt(population variance + 1e-8) averaged over its channels and pixels.
    """
    b, c, h, w = x.shape
    g = min(b, group_size)
    if b % g:
        raise ValueError(f"minibatch stddev: the batch ({b}) must be a multiple of the group size {g}")
    if c % num_features:
        raise ValueError(f"minibatch stddev: {c} channels do not split into {num_features} features")
    y = x.view(g, -1, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # [B/G, F, C/F, H, W]
    y = y.mean([2, 3, 4]).view(-1, num_features, 1, 1)  # [B/G, F, 1, 1]
    return torch.cat([x, y.repeat(g, 1, h, w)], 1)


class Discriminator(nn.Module):
    """rosinality's StyleGAN2 discriminator; see the module docstring.

    ``size``: input resolution, a power of two >= 8. ``channel_multiplier``/``channel_max``/``channel_base``: the
    widths, as ``generator_channels`` gives them for the generator (so G and D of one config match).
    ``stddev_group``/``stddev_feat``: minibatch-stddev group size and feature count (rosinality: 4, 1).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        channel_max: int = 512,
        channel_base: int | None = None,
        stddev_group: int = 4,
        stddev_feat: int = 1,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"Discriminator size must be a power of two >= 8, got {size}")
        self.size = size
        self.channels = generator_channels(size, channel_multiplier, channel_max, channel_base)
        ch = self.channels
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_channel = ch[size]
        for i in range(int(math.log2(size)), 2, -1):
            out_channel = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        self.final_conv = ConvLayer(in_channel + stddev_feat, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, size, size]`` (B a multiple of ``min(B, stddev_group)``) -> logits ``[B, 1]``."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"Discriminator expects [B, 3, {self.size}, {self.size}], got {tuple(x.shape)}")
        out = self.convs(x)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))
