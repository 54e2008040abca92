"""Building blocks of rosinality's StyleGAN2 generator, on ``cuda_ops.rosinality`` (kernel on CUDA, reference on CPU).

Module and parameter names equal rosinality's ``model.py`` so a ``g_ema`` state dict loads strictly. Beyond the
original, every modulated convolution can take (a) its style vector ``s`` directly instead of computing it from
``w`` (style space, StyleMask) and (b) a multiplicative weight offset ``W * (1 + delta)`` applied before
modulation and demodulation (HyperStyle / HyperReenact).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cuda_ops.rosinality import FusedLeakyReLU, fused_leaky_relu, upfirdn2d


class PixelNorm(nn.Module):
    """``x / sqrt(mean(x^2 over dim 1) + 1e-8)``: the normalisation in front of the mapping network."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def make_kernel(k: Sequence[float] | Tensor) -> Tensor:
    """Separable 1-D taps (or a 2-D kernel) to a 2-D FIR kernel normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class Upsample(nn.Module):
    """2x upsampling with the FIR ``kernel`` (gain ``factor**2`` baked into the buffer, as rosinality)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """FIR filtering with padding ``pad=(p0, p1)`` (rosinality meaning: same pair on x and y)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight ``randn/lr_mul`` used as ``W * lr_mul/sqrt(in)``.

    ``activation="fused_lrelu"`` applies ``lrelu(x W^T + b*lr_mul, 0.2) * sqrt(2)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            bias = self.bias * self.lr_mul if self.bias is not None else None
            return fused_leaky_relu(out, bias)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (weight ``[1, out, in, k, k]``, affine ``modulation`` w -> s).

    ``forward(x [B,in,H,W], w [B,style_dim])`` or with ``s=`` the style ``[B,in]`` directly. ``weight_delta``
    (broadcastable to ``[B,out,in,k,k]``) scales the weight as ``W * (1 + delta)`` before modulation and
    demodulation. Two formulations, same maths, different rounding: grouped (``fused=True``, rosinality's
    only path) folds the batch into the groups of one convolution with per-sample modulated weights;
    activation scaling (``fused=False``) scales the input by ``s`` and the output by the demodulation
    coefficients around one convolution shared by the batch. ``fused=None`` (default) chooses by what is
    computed, as NVIDIA's SynthesisLayer does (grouped only when not training): grouped when autograd records
    nothing, activation scaling when it does, because then the grouped form also pays for the gradient of
    the per-sample weights [B*out, in, k, k] (a second convolution as large as the forward) while activation
    scaling needs it only when the shared weight itself trains. With cuda_ops' reference ``upfirdn2d`` and
    ``bias_act``, a frozen 256 px generator's forward + backward w.r.t. W+ ran 1.90x and the path-length double
    backward 2.62x faster than rosinality's CPU formulation (1 thread, benchmarks/generator.py, README).
    ``weight_delta`` always takes the grouped path (the weights differ per sample).
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate = demodulate
        self.fused = fused

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
            f"demodulate={self.demodulate}, fused={self.fused}"
        )

    def forward(
        self, x: Tensor, w: Tensor | None = None, *, s: Tensor | None = None, weight_delta: Tensor | None = None
    ) -> Tensor:
        batch, in_channel, height, width = x.shape
        if s is None:
            if w is None:
                raise ValueError("ModulatedConv2d needs either w (latent) or s (style)")
            s = self.modulation(w)
        if s.shape != (batch, in_channel):
            raise ValueError(f"style must have shape {(batch, in_channel)}, got {tuple(s.shape)}")
        if weight_delta is None and not self._grouped(x, s):
            return self._forward_unfused(x, s)

        weight = self.weight if weight_delta is None else self.weight * (1 + weight_delta)
        weight = self.scale * weight * s.view(batch, 1, in_channel, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, batch * in_channel, height, width)
        if self.upsample:
            # conv_transpose2d wants [in, out/groups, k, k] per group: swap out/in inside each sample.
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, *out.shape[-2:])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channel, in_channel, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, *out.shape[-2:])

    def _grouped(self, x: Tensor, s: Tensor) -> bool:
        """Whether this call (without ``weight_delta``) takes the grouped formulation (see the class docstring)."""
        if self.fused is not None:
            return self.fused
        return not (torch.is_grad_enabled() and (x.requires_grad or s.requires_grad or self.weight.requires_grad))

    def _forward_unfused(self, x: Tensor, s: Tensor) -> Tensor:
        batch, in_channel = s.shape
        weight = self.scale * self.weight.squeeze(0)
        if self.demodulate:
            # sum_{i,k} (W[o,i,k] s[b,i])^2 = sum_i s[b,i]^2 sum_k W[o,i,k]^2: one [B,in] @ [in,out] product
            # instead of the per-sample weights [B,out,in,k,k] (and their gradient) that only this sum needs.
            dcoefs = (s.square() @ weight.square().sum((2, 3)).t() + 1e-8).rsqrt()
        x = x * s.view(batch, in_channel, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            out = out * dcoefs.view(batch, -1, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """``x + weight * noise``; fresh N(0,1) noise per sample when ``noise`` is None."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            batch, _, height, width = x.shape
            noise = x.new_empty(batch, 1, height, width).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned ``[1, C, 4, 4]`` input, repeated over the batch."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int | Tensor) -> Tensor:
        """``batch``: a batch size, or any tensor whose first dimension is the batch (rosinality passes W+)."""
        n = batch if isinstance(batch, int) else batch.shape[0]
        return self.input.repeat(n, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU (``activate.bias``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel,
            demodulate=demodulate,
        )  # fmt: skip
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(
        self,
        x: Tensor,
        w: Tensor | None = None,
        noise: Tensor | None = None,
        *,
        s: Tensor | None = None,
        weight_delta: Tensor | None = None,
    ) -> Tensor:
        out = self.conv(x, w, s=s, weight_delta=weight_delta)
        out = self.noise(out, noise=noise)
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, plus bias, plus the upsampled skip image."""

    def __init__(
        self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self,
        x: Tensor,
        w: Tensor | None = None,
        skip: Tensor | None = None,
        *,
        s: Tensor | None = None,
        weight_delta: Tensor | None = None,
    ) -> Tensor:
        out = self.conv(x, w, s=s, weight_delta=weight_delta) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out
