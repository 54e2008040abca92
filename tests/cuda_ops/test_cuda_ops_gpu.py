"""CUDA kernels against the float64 reference: forward, first and second derivatives, every activation and
upfirdn2d case, float16/32/64, contiguous / channels_last / strided inputs. Needs a GPU (marker gpu)."""

from __future__ import annotations

import pytest
import torch

from cuda_ops import (
    ACTIVATIONS,
    _build,
    bias_act,
    bias_act_ref,
    downsample2d,
    setup_filter,
    upfirdn2d,
    upfirdn2d_ref,
    upsample2d,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float16, torch.float32, torch.float64]
# float16 inputs are exact in float64; the kernel accumulates in float32 and rounds once at the end.
TOL = {torch.float16: (1e-2, 1e-2), torch.float32: (2e-5, 2e-5), torch.float64: (1e-10, 1e-10)}


@pytest.fixture(autouse=True)
def _force_kernels(monkeypatch):
    monkeypatch.setenv(_build.MODE_ENV, "cuda")  # raise instead of silently using the reference


def close(actual, expected, dtype, scale=1.0, what=""):
    rtol, atol = TOL[dtype]
    if actual is None or expected is None:
        assert actual is None or not actual.abs().any(), what
        assert expected is None or not expected.abs().any(), what
        return
    torch.testing.assert_close(
        actual.double(), expected.double(), rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}"
    )


def test_kernels_build_on_this_machine():
    assert _build.get_plugin("bias_act") is not None, _build._errors.get("bias_act")
    assert _build.get_plugin("upfirdn2d") is not None, _build._errors.get("upfirdn2d")


def _bias_act_inputs(layout, dtype, clamp, act, gain):
    torch.manual_seed(0)
    shapes = {
        "nchw": ([4, 16, 9, 7], 1),
        "channels_last": ([4, 16, 9, 7], 1),
        "dim3": ([3, 5, 6, 7], 3),
        "2d": ([33, 16], 1),
        "strided": ([4, 16, 9, 7], 1),
    }
    shape, dim = shapes[layout]
    x = torch.randn(shape, device="cuda") * 2
    b = torch.randn(shape[dim], device="cuda")
    s = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = x + 0.05 * torch.where(s >= 0, 1.0, -1.0)  # keep x + b away from the relu/lrelu kink
    x, b = x.to(dtype), b.to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # every other channel of a larger buffer
        buf = torch.zeros([shape[0], 2 * shape[1], *shape[2:]], device="cuda", dtype=dtype)
        buf[:, ::2] = x
        x = buf[:, ::2]
        assert not x.is_contiguous()
    # elements whose output is near the clamp edge may round to either side: no gradient flows there
    y64 = bias_act_ref(x.double(), b.double(), dim, act, None, gain, None)
    safe = torch.ones_like(y64, dtype=torch.bool) if clamp is None else (y64.abs() - clamp).abs() > 2e-2
    return x, b, dim, safe


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "dim3", "2d", "strided"])
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_kernel_matches_reference(act, dtype, layout, clamp):
    gain = 1.3
    x, b, dim, safe = _bias_act_inputs(layout, dtype, clamp, act, gain)
    x64, b64 = x.double().requires_grad_(True), b.double().requires_grad_(True)
    x, b = x.detach().requires_grad_(True), b.detach().requires_grad_(True)

    y = bias_act(x, b, dim=dim, act=act, gain=gain, clamp=clamp)
    y64 = bias_act_ref(x64, b64, dim=dim, act=act, gain=gain, clamp=clamp)
    assert y.dtype == dtype and y.shape == x.shape
    close(y, y64, dtype, scale=4, what="forward")

    # first order (dy zero near the clamp edge), with create_graph for the second order
    dy = (torch.randn_like(y64) * safe).to(dtype).requires_grad_(True)
    dy64 = dy.detach().double().requires_grad_(True)
    dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    dx64, db64 = torch.autograd.grad(y64, (x64, b64), dy64, create_graph=True)
    close(dx, dx64, dtype, scale=4, what="dx")
    summed = (x.numel() / b.numel()) ** 0.5  # db sums this many squared-scale terms
    close(db, db64, dtype, scale=4 * summed, what="db")

    # second order: gradient of <dx, v> with respect to x, b and dy
    v = torch.randn_like(dx64).to(dtype)
    g = torch.autograd.grad((dx * v).sum(), (x, b, dy), allow_unused=True)
    g64 = torch.autograd.grad((dx64 * v.double()).sum(), (x64, b64, dy64), allow_unused=True)
    for name, a, e in zip(("d2x", "d2b", "d2dy"), g, g64):
        close(a, e, dtype, scale=8 * (summed if name == "d2b" else 1), what=name)


def test_bias_act_large_and_no_bias():
    x = torch.randn(2**22 + 3, device="cuda")
    torch.testing.assert_close(bias_act(x, act="swish"), bias_act_ref(x, act="swish"), rtol=1e-5, atol=1e-5)


FILTERS = {
    "4x4": lambda: setup_filter([1, 3, 3, 1]),
    "sep4": lambda: setup_filter([1, 3, 3, 1], separable=True),
    "sep8": lambda: setup_filter([1, 3, 5, 7, 7, 5, 3, 1]),
    "3x5": lambda: torch.arange(15.0).reshape(3, 5).sin(),
    "1x1": lambda: None,
}
CASES = [
    # (up, down, padding, filter): the tiled kernels (4x4, up or down by 2) and the generic one
    (2, 1, [2, 1, 2, 1], "4x4"),
    (1, 2, [1, 1, 1, 1], "4x4"),
    (2, 1, [2, 1, 2, 1], "sep4"),
    (1, 2, [1, 1, 1, 1], "sep4"),
    (2, 1, [5, 4, 5, 4], "sep8"),
    (1, 2, [3, 3, 3, 3], "sep8"),
    (1, 1, [1, 1, 2, 2], "3x5"),
    (4, 1, [3, 2, 1, 0], "3x5"),
    (1, 4, [0, 2, -1, 3], "3x5"),
    ([2, 1], [1, 2], [2, -1, 0, 3], "3x5"),
    (3, 2, [1, 2, 3, -1], "sep4"),
    (2, 2, [1, 1, 1, 1], "4x4"),
    (1, 1, 0, "1x1"),
    (2, 1, [0, 1, 0, 1], "1x1"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"up{c[0]}-down{c[1]}-{c[3]}" for c in CASES])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("flip,gain", [(False, 1.0), (True, 2.5)])
def test_upfirdn2d_kernel_matches_reference(case, dtype, layout, flip, gain):
    up, down, padding, fname = case
    torch.manual_seed(1)
    f = FILTERS[fname]()
    f = None if f is None else f.cuda()
    x = torch.randn(3, 6, 70, 67, device="cuda").to(dtype)  # several tiles, ragged borders
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[:, ::2, :, 1:]
    x = x.requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    y = upfirdn2d(x, f, **kwargs)
    y64 = upfirdn2d_ref(x64, f, **kwargs)
    assert y.dtype == dtype and y.shape == y64.shape
    close(y, y64, dtype, scale=4, what="forward")
    dy = torch.randn_like(y64).to(dtype).requires_grad_(True)
    dy64 = dy.detach().double().requires_grad_(True)
    (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
    (dx64,) = torch.autograd.grad(y64, x64, dy64, create_graph=True)
    close(dx, dx64, dtype, scale=8, what="dx")
    v = torch.randn_like(dx64).to(dtype)
    (d2,) = torch.autograd.grad((dx * v).sum(), dy)
    (d2_64,) = torch.autograd.grad((dx64 * v.double()).sum(), dy64)
    close(d2, d2_64, dtype, scale=8, what="d(dx)/d(dy)")


def test_upfirdn2d_many_planes_and_helpers():
    f = setup_filter([1, 3, 3, 1], device="cuda")
    x = torch.randn(70000, 1, 8, 8, device="cuda")  # more planes than one grid dimension holds
    torch.testing.assert_close(upsample2d(x, f), upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1], gain=4))
    torch.testing.assert_close(downsample2d(x, f), upfirdn2d_ref(x, f, down=2, padding=1))


def test_bfloat16_takes_the_reference():
    f = setup_filter([1, 3, 3, 1], device="cuda")
    x = torch.randn(2, 3, 8, 8, device="cuda", dtype=torch.bfloat16)
    torch.testing.assert_close(upsample2d(x, f), upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1], gain=4))
    b = torch.randn(3, device="cuda")
    torch.testing.assert_close(bias_act(x, b, act="lrelu"), bias_act_ref(x, b, act="lrelu"))
