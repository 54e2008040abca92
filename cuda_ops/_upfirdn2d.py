"""Upsample, FIR-filter, downsample (StyleGAN2's ``upfirdn2d``) and its filter helpers.

Per channel: insert ``up - 1`` zeros after every pixel, pad (negative = crop), convolve with the FIR filter
keeping only outputs whose window lies fully inside, keep every ``down``-th pixel. The reference path never
materialises the zero-inserted image: it splits the work into polyphase components, each a correlation of
the input with a sub-filter (on CPU without down-stride: sums of scaled shifted views, in cache-sized chunks
of planes; otherwise strided depthwise convolutions). That gives the same sums without the multiplications
by inserted zeros and without computing the outputs that ``down`` discards. Autograd through these torch ops
gives derivatives of any order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cuda_ops import _build

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def _parse_scaling(value: Scaling, name: str) -> tuple[int, int]:
    """int or [x, y] -> (sx, sy), each >= 1."""
    if isinstance(value, int):
        value = [value, value]
    value = [int(v) for v in value]
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"upfirdn2d: {name} must be a positive int or [x, y] of positive ints, got {value}")
    return value[0], value[1]


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1); negative values crop."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f"upfirdn2d: padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")
    return padding[0], padding[1], padding[2], padding[3]


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a 2-D [fh, fw] or separable 1-D [taps] filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: filter must be 1-D (separable) or 2-D [fh, fw], got shape {tuple(f.shape)}")
    fw = f.shape[-1]
    fh = f.shape[0]
    return fw, fh


def setup_filter(
    f,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn a list/array/tensor into a float32 FIR filter ``[fh, fw]`` or separable ``[taps]``.

    ``None`` -> ``[1]``; a scalar -> ``[1]``-shaped; a 1-D filter becomes its outer product with itself unless
    ``separable`` (default: 1-D with at least 8 taps). Then normalised to sum 1, optionally flipped, scaled by
    ``gain ** (ndim / 2)``.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a scalar, 1-D or 2-D non-empty filter, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"setup_filter: a 2-D filter cannot be separable (shape {tuple(f.shape)})")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _axis_plan(out: int, up: int, down: int, p0: int, taps: int) -> tuple[int, int, int, list]:
    """Polyphase plan along one axis for ``y[o] = sum_k g[k] * x[(o*down + k - p0) / up]``.

    ``g`` is the correlation filter; taps that would hit an inserted zero drop out. Outputs are grouped into
    ``L = up / gcd(up, down)`` phases ``o = L*q + r``; phase ``r`` reads ``x[q*S + c_r + j]`` with taps
    ``g[k_r + j*up]``, a correlation with input stride ``S = down / gcd(up, down)``.

    Returns (L, S, outputs per phase Q, [(c_r, tap indices) for r in range(L)]).
    """
    g = math.gcd(up, down)
    L, S = up // g, down // g
    Q = -(-out // L)
    phases = []
    for r in range(L):
        k0 = (p0 - r * down) % up
        phases.append(((r * down + k0 - p0) // up, list(range(k0, taps, up))))
    return L, S, Q, phases


def _upfirdn2d_pass(x: torch.Tensor, w: torch.Tensor, up, down, pad, out_hw) -> torch.Tensor:
    """One 2-D polyphase pass with the correlation filter ``w`` [kh, kw] (already flipped, gained, x.dtype)."""
    N, C, H, W = x.shape
    (upx, upy), (downx, downy), (px0, _, py0, _) = up, down, pad
    outH, outW = out_hw
    kh, kw = w.shape
    Lx, Sx, Qx, plan_x = _axis_plan(outW, upx, downx, px0, kw)
    Ly, Sy, Qy, plan_y = _axis_plan(outH, upy, downy, py0, kh)
    if _use_shift_add(x, w, Sx, Sy, Lx, Ly):
        y = _shift_add_pass(x, w, plan_y, plan_x, Ly, Lx, Qy, Qx)
        return y[:, :, :outH, :outW]
    out = None if Lx == 1 and Ly == 1 else x.new_empty([N, C, Qy, Ly, Qx, Lx])
    y = None
    for ry, (cy, ky) in enumerate(plan_y):
        for rx, (cx, kx) in enumerate(plan_x):
            if not ky or not kx:  # no tap of this phase lands on an input pixel
                term = x.new_zeros([N, C, Qy, Qx])
                if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
                    term = term + (x.sum() + w.sum()) * 0  # zeros that keep the graph (zero gradients)
            else:
                end_y, end_x = cy + Sy * (Qy - 1) + len(ky), cx + Sx * (Qx - 1) + len(kx)
                p = [-cx, end_x - W, -cy, end_y - H]
                sub = w[ky][:, kx]
                weight = sub.expand(C, 1, *sub.shape).contiguous()
                if p[0] >= max(p[1], 0) and p[2] >= max(p[3], 0):  # conv's own zero padding, no copy
                    term = F.conv2d(x, weight, stride=(Sy, Sx), padding=(p[2], p[0]), groups=C)
                    term = term[:, :, :Qy, :Qx]
                else:
                    term = F.conv2d(F.pad(x, p), weight, stride=(Sy, Sx), groups=C)
            if out is None:
                y = term
            else:
                out[:, :, :, ry, :, rx] = term
    if out is not None:
        y = out.reshape(N, C, Qy * Ly, Qx * Lx)
    return y[:, :, :outH, :outW]


def _use_shift_add(x: torch.Tensor, w: torch.Tensor, Sx: int, Sy: int, Lx: int, Ly: int) -> bool:
    """Whether a pass runs as sums of scaled shifted views instead of depthwise convolutions.

    Only on CPU, without a down-stride, and with several phases (upsampling): there each phase's sub-filter is
    small and the phases' results interleave, so per-tap shifted sums beat one small convolution per phase
    (measured ~2.7x faster than zero insertion + full convolution for upsample2d). A single-phase stride-1
    pass (a plain blur) is one depthwise convolution, 2-3x faster than a shifted sum per tap on one thread
    (benchmarks/ops.py, "blur 4x4 pad 1"). The shifted sums need the taps as numbers, hence not when the
    filter itself requires grad. Strided (downsampling) phases always use strided convolutions.
    """
    return x.device.type == "cpu" and Sx == Sy == 1 and Lx * Ly > 1 and not w.requires_grad


# Planes are processed in chunks of about this many input bytes so the temporaries stay in cache.
_CHUNK_BYTES = 256 * 1024


def _shift_add_pass(x: torch.Tensor, w: torch.Tensor, plan_y, plan_x, Ly, Lx, Qy, Qx) -> torch.Tensor:
    """Stride-1 polyphase pass as sums of scaled shifted views, chunked over the N*C planes."""
    N, C, H, W = x.shape
    lo_y = min(cy for cy, _ in plan_y)
    lo_x = min(cx for cx, _ in plan_x)
    hi_y = max(cy + Qy - 1 + max(len(ky), 1) for cy, ky in plan_y)
    hi_x = max(cx + Qx - 1 + max(len(kx), 1) for cx, kx in plan_x)
    pad = [-lo_x, hi_x - W, -lo_y, hi_y - H]
    taps = [[w[ky][:, kx].tolist() if ky and kx else None for _, kx in plan_x] for _, ky in plan_y]
    planes = x.reshape(N * C, H, W)
    out = x.new_empty([N * C, Qy, Ly, Qx, Lx])
    chunk = max(1, _CHUNK_BYTES // max(1, (hi_y - lo_y) * (hi_x - lo_x) * x.element_size()))
    for p0 in range(0, N * C, chunk):
        xc = planes[p0 : p0 + chunk]
        xp = F.pad(xc, pad) if any(pad) else xc
        for ry, (cy, _) in enumerate(plan_y):
            for rx, (cx, _) in enumerate(plan_x):
                if taps[ry][rx] is None:  # no tap of this phase lands on an input pixel
                    out[p0 : p0 + chunk, :, ry, :, rx] = 0
                    continue
                src = xp[:, cy - lo_y :, cx - lo_x :]
                acc = None
                for a, row in enumerate(taps[ry][rx]):
                    for b, tap in enumerate(row):
                        view = src[:, a : a + Qy, b : b + Qx]
                        acc = view * tap if acc is None else acc.add_(view, alpha=tap)
                out[p0 : p0 + chunk, :, ry, :, rx] = acc
    return out.reshape(N, C, Qy * Ly, Qx * Lx)


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Reference (pure torch, any-order gradients) path of :func:`upfirdn2d`; same arguments.

    The formulation follows what is computed. Without gradients, or when only ``x`` needs one, the forward
    is the fastest polyphase evaluation (shift-add on CPU) and the gradient is the transposed upfirdn2d
    evaluated the same way, through :class:`_Upfirdn2dRef` again for every further order (what NVIDIA's CUDA
    op does). Recording the shift-add sums in autograd instead would cost a zero-filled, copied buffer per
    tap in the backward. When the filter itself needs a gradient, plain autograd runs through strided
    depthwise convolutions.
    """
    upx, upy, downx, downy, pad, fw, fh, outH, outW = _check(x, f, up, down, padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if torch.is_grad_enabled() and x.requires_grad and not f.requires_grad:
        return _Upfirdn2dRef.apply(x, f, (upx, upy), (downx, downy), pad, bool(flip_filter), float(gain))
    return _upfirdn2d_eval(x, f, (upx, upy), (downx, downy), pad, flip_filter, gain, (outH, outW))


def _upfirdn2d_eval(x, f, up, down, pad, flip_filter, gain, out_hw) -> torch.Tensor:
    """Checked arguments in, ``[N, C, outH, outW]`` out; differentiable by autograd in ``x`` and ``f``."""
    (upx, upy), (downx, downy), (outH, outW) = up, down, out_hw
    fw, _ = _filter_size(f)
    f = (f * (gain ** (f.ndim / 2))).to(device=x.device, dtype=x.dtype)
    if not flip_filter:  # true convolution = correlation with the flipped filter
        f = f.flip(list(range(f.ndim)))
    px0, px1, py0, py1 = pad
    if f.ndim == 2:
        return _upfirdn2d_pass(x, f, (upx, upy), (downx, downy), pad, (outH, outW))
    midW = (x.shape[3] * upx + px0 + px1 - fw) // downx + 1
    x = _upfirdn2d_pass(x, f[None, :], (upx, 1), (downx, 1), (px0, px1, 0, 0), (x.shape[2], midW))
    return _upfirdn2d_pass(x, f[:, None], (1, upy), (1, downy), (0, 0, py0, py1), (outH, outW))


class _Upfirdn2dRef(torch.autograd.Function):
    """upfirdn2d with gradient in ``x`` only: forward without autograd, backward = the transposed op."""

    @staticmethod
    def forward(ctx, x, f, up, down, pad, flip_filter, gain):
        ih, iw = x.shape[2], x.shape[3]
        fw, fh = _filter_size(f)
        outW = (iw * up[0] + pad[0] + pad[1] - fw) // down[0] + 1
        outH = (ih * up[1] + pad[2] + pad[3] - fh) // down[1] + 1
        ctx.save_for_backward(f)
        ctx.params = (ih, iw, up, down, pad, flip_filter, gain, outH, outW)
        return _upfirdn2d_eval(x, f, up, down, pad, flip_filter, gain, (outH, outW))

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        ih, iw, (upx, upy), (downx, downy), (px0, _, py0, _), flip, gain, oh, ow = ctx.params
        fw, fh = _filter_size(f)
        p = (
            fw - px0 - 1,
            iw * upx - ow * downx + px0 - upx + 1,
            fh - py0 - 1,
            ih * upy - oh * downy + py0 - upy + 1,
        )
        dx = upfirdn2d_ref(dy, f, (downx, downy), (upx, upy), p, not flip, gain)
        return dx, None, None, None, None, None, None


def _check(x: torch.Tensor, f: torch.Tensor | None, up, down, padding):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is not None and not isinstance(f, torch.Tensor):
        raise TypeError(f"upfirdn2d: filter must be a tensor or None (see setup_filter), got {type(f).__name__}")
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    pad = _parse_padding(padding)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = pad
    upW, upH = x.shape[3] * upx + px0 + px1, x.shape[2] * upy + py0 + py1
    if upW < fw or upH < fh:
        raise ValueError(
            f"upfirdn2d: the upsampled and padded input ({upH}x{upW}) is smaller than the filter ({fh}x{fw}); "
            f"x {tuple(x.shape)}, up={up}, padding={padding}"
        )
    outW = (upW - fw + downx) // downx
    outH = (upH - fh + downy) // downy
    return upx, upy, downx, downy, pad, fw, fh, outH, outW


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: ``[N, C, H, W]``.
        f: float32 filter ``[fh, fw]``, separable ``[taps]`` (applied along x then y), or None (identity).
        up, down: int or ``[x, y]``.
        padding: int, ``[x, y]`` (= ``[x, x, y, y]``) or ``[x0, x1, y0, y1]``; negative values crop.
        flip_filter: False = convolution, True = correlation.
        gain: the filter is scaled by ``gain ** (f.ndim / 2)`` (so a separable filter gets sqrt(gain) per pass).
        impl: "ref", "cuda" or "auto"; None reads ``$PAPERLAB_CUDA_OPS``.

    Returns:
        ``[N, C, outH, outW]`` with ``outW = (W*upx + x0 + x1 - fw + downx) // downx`` (same for H).
    """
    upx, upy, downx, downy, pad, fw, fh, outH, outW = _check(x, f, up, down, padding)
    if _build.use_cuda(x, "upfirdn2d", impl):
        from cuda_ops._cuda_autograd import upfirdn2d_cuda

        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return upfirdn2d_cuda(
            x, f.to(device=x.device, dtype=torch.float32), (upx, upy), (downx, downy), pad, flip_filter, float(gain)
        )
    return upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Filter with ``f`` keeping the size (plus ``padding``): pads by half the filter size on each side."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample by ``up`` (output ``H*up`` x ``W*up`` with zero ``padding``); the filter gain is ``gain*upx*upy``."""
    upx, upy = _parse_scaling(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Downsample by ``down`` (output ``H/down`` x ``W/down`` with zero ``padding``)."""
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
