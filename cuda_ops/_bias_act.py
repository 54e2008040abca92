"""Fused bias + activation + gain + clamp (StyleGAN2's ``bias_act``), reference path and CUDA dispatch.

``y = clamp(act(x + b, alpha) * gain, -clamp, clamp)``, every step optional. The reference is plain torch
(autograd gives derivatives of any order); the CUDA kernel (float16/32/64 on a CUDA device) is built on
first use by :mod:`cuda_ops._build` and supports exact first and second derivatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cuda_ops import _build


@dataclass(frozen=True)
class ActivationSpec:
    """One row of the activation table: NVIDIA's default alpha and gain, the kernel's activation index,
    what the CUDA backward needs saved ('x', 'y' or nothing) and whether the second derivative is non-zero."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    ref: str
    has_2nd_grad: bool


ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(lambda x, alpha: x, 0.0, 1.0, 1, "", False),
    "relu": ActivationSpec(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2), 2, "y", False),
    "lrelu": ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), 3, "y", False),
    "tanh": ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0, 4, "y", True),
    "sigmoid": ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 5, "y", True),
    # NVIDIA's elu ignores alpha (always exp(x) - 1 below zero); kept that way for identical outputs.
    "elu": ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0, 6, "y", True),
    "selu": ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0, 7, "y", True),
    "softplus": ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0, 8, "y", True),
    "swish": ActivationSpec(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, "x", True),
}


def _resolve(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float | None, gain: float | None, clamp
) -> tuple[ActivationSpec, int, float, float, float]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act: x must be a tensor, got {type(x).__name__}")
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    if b is not None:
        if x.ndim == 0:
            raise ValueError("bias_act: a bias needs x with at least one dimension")
        if not -x.ndim <= dim < x.ndim:
            raise ValueError(f"bias_act: dim={dim} out of range for x of shape {tuple(x.shape)}")
        dim = dim % x.ndim
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias of shape {tuple(b.shape)} does not match x.shape[{dim}]={x.shape[dim]} "
                f"(x has shape {tuple(x.shape)}); the bias must be 1-D with one value per entry of dim"
            )
    elif x.ndim > 0:
        dim = dim % x.ndim
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, dim, alpha, gain, clamp


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """The reference path of :func:`bias_act` (plain torch ops, any device and dtype, any-order gradients)."""
    spec, dim, alpha, gain, clamp = _resolve(x, b, dim, act, alpha, gain, clamp)
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add bias ``b`` along ``dim``, apply ``act``, scale by ``gain``, clamp to ``[-clamp, clamp]``.

    Args:
        x: any shape and memory format (channels_last included); the output has the same shape and dtype.
        b: ``[x.shape[dim]]`` or None; cast to ``x.dtype``.
        dim: the dimension the bias runs along.
        act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus or swish.
        alpha: lrelu's negative slope (None: 0.2); unused by the others.
        gain: output scale (None: the activation's default, sqrt(2) for relu/lrelu/swish, else 1).
        clamp: clamp the output to ``[-clamp, clamp]`` (None: no clamping).
        impl: "ref", "cuda" or "auto"; None reads ``$PAPERLAB_CUDA_OPS`` (default auto).
    """
    spec, dim, alpha, gain, clamp = _resolve(x, b, dim, act, alpha, gain, clamp)
    if _build.use_cuda(x, "bias_act", impl):
        from cuda_ops._cuda_autograd import bias_act_cuda

        if b is not None:
            b = b.to(x.dtype)
        return bias_act_cuda(x, b, dim, spec, alpha, gain, clamp)
    if act in ("relu", "lrelu") and clamp < 0:
        if b is not None:
            b = b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        if torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)):
            return _LinearUnitRef.apply(x, b, alpha, gain)
        return _linear_unit(x, b, alpha, gain)
    return bias_act_ref(x, b, dim, act, alpha, gain, clamp if clamp >= 0 else None)


def _linear_unit(x: torch.Tensor, b: torch.Tensor | None, alpha: float, gain: float) -> torch.Tensor:
    """``lrelu(x + b, alpha) * gain`` (relu: alpha 0) with one new tensor; ``b`` already broadcastable to x."""
    y = x + b if b is not None else x.clone()
    if alpha == 0:
        y.relu_()
    else:
        F.leaky_relu_(y, alpha)
    if gain != 1:
        y.mul_(gain)
    return y


class _LinearUnitRef(torch.autograd.Function):
    """Bias + (leaky) ReLU + gain on CPU/reference, as NVIDIA's op: the backward reads the saved output only
    (``dx = dy * gain * (1 if y > 0 else alpha)``), so the forward keeps one tensor instead of three and the
    backward is one pass plus the bias reduction. Piecewise linear: the backward is linear in ``dy`` with a
    constant slope map, which makes every higher derivative exact (the second derivative in x is zero)."""

    @staticmethod
    def forward(ctx, x, b, alpha, gain):
        y = _linear_unit(x, b, alpha, gain)
        ctx.save_for_backward(y)
        ctx.alpha, ctx.gain = alpha, gain
        ctx.bias_dims = None if b is None else [i for i in range(x.ndim) if b.shape[i] == 1]
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dx = torch.ops.aten.leaky_relu_backward(dy, y.detach(), ctx.alpha, True)
        if ctx.gain != 1:
            dx = dx * ctx.gain
        db = None
        if ctx.needs_input_grad[1]:
            db = dx.sum(ctx.bias_dims, keepdim=True)
        return dx, db, None, None
