"""Autograd Functions around the compiled kernels (imported only once a kernel is about to run).

bias_act: exact first and second derivatives (the first-derivative op is linear in the incoming gradient, so
its own gradient with respect to that gradient is itself; the second derivative of the activation comes from
the kernel's mode 2). Third order raises. upfirdn2d: the gradient is upfirdn2d with transposed parameters,
through the same Function, so any order works.
"""

from __future__ import annotations

import torch

from cuda_ops import _build
from cuda_ops._bias_act import ActivationSpec

_DTYPE_CODES = {torch.float16: 0, torch.float32: 1, torch.float64: 2}


def _dtype_code(x: torch.Tensor) -> int:
    if x.dtype not in _DTYPE_CODES:
        raise TypeError(f"cuda_ops: dtype {x.dtype} has no kernel (float16/32/64 only)")
    return _DTYPE_CODES[x.dtype]


def _stream(x: torch.Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0


def _is_dense(x: torch.Tensor) -> bool:
    """Contiguous or channels_last: one flat index walks the whole tensor (and empty_like keeps the layout)."""
    if x.is_contiguous():
        return True
    if x.ndim == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    return x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x if _is_dense(x) else x.contiguous()


def _match(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with ``like``'s dtype and strides (the kernel walks all tensors with one flat index)."""
    if t.dtype == like.dtype and t.stride() == like.stride():
        return t
    out = torch.empty_like(like)
    out.copy_(t)
    return out


def _reduce_bias(d: torch.Tensor, dim: int) -> torch.Tensor:
    return d.sum([i for i in range(d.ndim) if i != dim])


def _bias_act_call(x, b, g, g2, mode: int, dim: int, spec: ActivationSpec, alpha, gain, clamp) -> torch.Tensor:
    """One kernel launch; x dense, b contiguous [x.shape[dim]] or None, g/g2 with x's dtype and strides."""
    plugin = _build.get_plugin("bias_act")
    if not _is_dense(x):
        raise ValueError("cuda_ops.bias_act: x must be non-overlapping and dense")
    for name, t in (("g", g), ("g2", g2)):
        if t is not None and (t.dtype != x.dtype or t.stride() != x.stride() or t.device != x.device):
            raise ValueError(f"cuda_ops.bias_act: {name} must have x's dtype, device and strides")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim] or b.dtype != x.dtype or b.device != x.device):
        raise ValueError("cuda_ops.bias_act: bias must be [x.shape[dim]] with x's dtype and device")
    with torch.cuda.device(x.device):
        out = torch.empty_like(x)
        plugin.bias_act(
            x.data_ptr(),
            b.contiguous().data_ptr() if b is not None else 0,
            g.data_ptr() if g is not None else 0,
            g2.data_ptr() if g2 is not None else 0,
            out.data_ptr(),
            x.numel(),
            max(x.stride(dim), 1) if b is not None else 1,
            x.shape[dim] if b is not None else 1,
            mode,
            spec.cuda_idx,
            float(alpha),
            float(gain),
            float(clamp),
            _dtype_code(x),
            _stream(x),
        )
    return out


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, spec, alpha, gain, clamp):
        x = _dense(x)
        ctx.params = (dim, spec, alpha, gain, clamp)
        ctx.has_bias = b is not None
        ctx.save_for_backward(x, b)
        return _bias_act_call(x, b, None, None, 0, dim, spec, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.params[0]
        dx = _BiasActGrad.apply(_match(dy, x), x, b, *ctx.params)
        db = _reduce_bias(dx, dim) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return dx, db, None, None, None, None, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * act'(x + b) * gain (zero where clamped): linear in dy."""

    @staticmethod
    def forward(ctx, dy, x, b, dim, spec, alpha, gain, clamp):
        ctx.params = (dim, spec, alpha, gain, clamp)
        ctx.has_bias = b is not None
        ctx.save_for_backward(dy, x, b)
        return _bias_act_call(x, b, dy, None, 1, dim, spec, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        dim, spec = ctx.params[0], ctx.params[1]
        d_dx = _match(d_dx, x)
        d_dy = _BiasActGrad.apply(d_dx, x, b, *ctx.params) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _BiasActGrad2.apply(d_dx, dy, x, b, *ctx.params)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                d_b = _reduce_bias(d_x, dim)
        return d_dy, d_x, d_b, None, None, None, None, None


class _BiasActGrad2(torch.autograd.Function):
    """d_x = d_dx * dy * act''(x + b) * gain (zero where clamped); its own gradient (3rd order) is not provided."""

    @staticmethod
    def forward(ctx, d_dx, dy, x, b, dim, spec, alpha, gain, clamp):
        return _bias_act_call(x, b, d_dx, dy, 2, dim, spec, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "cuda_ops.bias_act: third-order gradients are not supported by the CUDA kernel; use impl='ref'"
        )


def bias_act_cuda(x, b, dim: int, spec: ActivationSpec, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    """bias_act on a CUDA float16/32/64 tensor through the kernel (``b`` already in x.dtype or None)."""
    if b is not None:
        b = b.contiguous()
    return _BiasAct.apply(x, b, dim, spec, alpha, gain, clamp)


def _upfirdn2d_launch(x: torch.Tensor, f: torch.Tensor, upx, upy, downx, downy, px0, px1, py0, py1) -> torch.Tensor:
    """One kernel launch with the correlation filter ``f`` [fh, fw] (float32, gain applied)."""
    plugin = _build.get_plugin("upfirdn2d")
    N, C, H, W = x.shape
    f = f.to(device=x.device, dtype=torch.float32).contiguous()
    fh, fw = f.shape
    outW = (W * upx + px0 + px1 - fw) // downx + 1
    outH = (H * upy + py0 + py1 - fh) // downy + 1
    if outW < 1 or outH < 1:
        raise ValueError(f"cuda_ops.upfirdn2d: empty output for x {tuple(x.shape)} and filter {tuple(f.shape)}")
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.cuda.device(x.device):
        out = torch.empty([N, C, outH, outW], dtype=x.dtype, device=x.device, memory_format=fmt)
        if out.numel() > 0:
            plugin.upfirdn2d(
                x.data_ptr(),
                f.data_ptr(),
                out.data_ptr(),
                N,
                C,
                H,
                W,
                *x.stride(),
                outH,
                outW,
                *out.stride(),
                upx,
                upy,
                downx,
                downy,
                px0,
                py0,
                fw,
                fh,
                _dtype_code(x),
                _stream(x),
            )
    return out


def _upfirdn2d_call(x, f, up, down, pad, flip_filter: bool, gain: float) -> torch.Tensor:
    """One forward evaluation: the filter gets ``gain ** (ndim / 2)`` and is flipped into correlation form."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return _upfirdn2d_launch(x, f, upx, upy, downx, downy, px0, px1, py0, py1)
    hot = f.numel() == 4 and ((up, down) == ((2, 2), (1, 1)) or (up, down) == ((1, 1), (2, 2)))
    # One pass of the tiled 4x4 kernel beats two separable passes; the float32 outer product would round
    # the taps below float64 precision, so float64 inputs keep the two exact passes.
    if hot and x.dtype != torch.float64:
        return _upfirdn2d_launch(x, torch.outer(f, f), upx, upy, downx, downy, px0, px1, py0, py1)
    x = _upfirdn2d_launch(x, f[None, :], upx, 1, downx, 1, px0, px1, 0, 0)
    return _upfirdn2d_launch(x, f[:, None], 1, upy, 1, downy, 0, 0, py0, py1)


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, up, down, pad, flip_filter, gain):
        y = _upfirdn2d_call(x, f, up, down, pad, flip_filter, gain)
        ctx.save_for_backward(f)
        ctx.params = (tuple(x.shape), up, down, pad, flip_filter, gain, tuple(y.shape))
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        (_, _, ih, iw), (upx, upy), (downx, downy), (px0, _, py0, _), flip, gain, (_, _, oh, ow) = ctx.params
        fw, fh = f.shape[-1], f.shape[0]
        p = (
            fw - px0 - 1,
            iw * upx - ow * downx + px0 - upx + 1,
            fh - py0 - 1,
            ih * upy - oh * downy + py0 - upy + 1,
        )
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _Upfirdn2d.apply(dy, f, (downx, downy), (upx, upy), p, not flip, gain)
        return dx, None, None, None, None, None, None


def upfirdn2d_cuda(x, f, up, down, pad, flip_filter: bool, gain: float) -> torch.Tensor:
    """upfirdn2d on a CUDA float16/32/64 tensor through the kernels; ``f`` float32 on x's device, no grad."""
    if f.requires_grad:
        raise ValueError("cuda_ops.upfirdn2d: the CUDA path has no filter gradient; pass f.detach() or impl='ref'")
    return _Upfirdn2d.apply(x, f, tuple(up), tuple(down), tuple(pad), bool(flip_filter), float(gain))
