"""upfirdn2d reference against a direct transcription of the definition, written without conv2d."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from cuda_ops import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d


def direct_upfirdn2d(x, f, up, down, pad, flip, gain):
    """Zero insertion by index assignment, explicit zero padding / cropping, and the convolution as a sum over
    filter taps of shifted slices, then subsampling. float64 throughout."""
    upx, upy = (up, up) if isinstance(up, int) else up
    dx, dy = (down, down) if isinstance(down, int) else down
    x0, x1, y0, y1 = pad
    N, C, H, W = x.shape
    x = x.double()
    z = torch.zeros(N, C, H * upy, W * upx, dtype=torch.float64)
    z[:, :, ::upy, ::upx] = x
    # pad with zeros, then crop (negative padding)
    big = torch.zeros(N, C, z.shape[2] + max(y0, 0) + max(y1, 0), z.shape[3] + max(x0, 0) + max(x1, 0), dtype=z.dtype)
    big[:, :, max(y0, 0) : max(y0, 0) + z.shape[2], max(x0, 0) : max(x0, 0) + z.shape[3]] = z
    big = big[:, :, max(-y0, 0) : big.shape[2] - max(-y1, 0), max(-x0, 0) : big.shape[3] - max(-x1, 0)]
    if f is None:
        f2 = torch.ones(1, 1, dtype=torch.float64)
    elif f.ndim == 1:
        f2 = f.double()[:, None] * f.double()[None, :]
    else:
        f2 = f.double()
    f2 = f2 * gain
    fh, fw = f2.shape
    oh, ow = big.shape[2] - fh + 1, big.shape[3] - fw + 1
    out = torch.zeros(N, C, oh, ow, dtype=torch.float64)
    for i in range(fh):
        for j in range(fw):
            # true convolution: output (a, b) takes big[a + i, b + j] * f[fh-1-i, fw-1-j]; correlation if flip
            tap = f2[i, j] if flip else f2[fh - 1 - i, fw - 1 - j]
            out += tap * big[:, :, i : i + oh, j : j + ow]
    return out[:, :, ::dy, ::dx]


def as4(padding):
    if isinstance(padding, int):
        return [padding] * 4
    if len(padding) == 2:
        return [padding[0], padding[0], padding[1], padding[1]]
    return list(padding)


FILTERS = {
    "none": None,
    "sep4": torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64),
    "sep3": torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
    "2d3x5": torch.arange(15, dtype=torch.float64).reshape(3, 5).sin(),
    "2d4x4": torch.arange(16, dtype=torch.float64).reshape(4, 4).cos(),
}
PADDINGS = [0, 2, [1, 2], [2, 1, -1, 3], [-1, 2, 3, -2]]
FLIP_GAIN = [(False, 1.0), (True, 2.5), (False, 0.5)]


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), ([2, 1], [1, 2]), (3, 2), (2, 2), (4, 1), (1, 4)])
def test_against_direct_definition(up, down):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    checked = 0
    for (fname, f), padding, (flip, gain) in itertools.product(FILTERS.items(), PADDINGS, FLIP_GAIN):
        expected = direct_upfirdn2d(x, f, up, down, as4(padding), flip, gain)
        if min(expected.shape) == 0:
            continue
        y = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        assert y.shape == expected.shape, (fname, padding, flip, gain)
        err = (y - expected).abs().max().item()
        assert err < 1e-10, (fname, padding, flip, gain, err)
        checked += 1
    assert checked >= 30


def test_float32_and_channels_last():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    f = setup_filter([1, 3, 3, 1])
    y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4)
    expected = direct_upfirdn2d(x, f, 2, 1, [2, 1, 2, 1], False, 4.0)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)


def test_output_size_formula():
    x = torch.zeros(1, 1, 11, 6)
    f = torch.ones(3, 5)
    for upx, upy, dx, dy, p in itertools.product([1, 2, 3], [1, 2], [1, 2, 3], [1, 2], [[0, 0, 0, 0], [3, -1, 2, 4]]):
        y = upfirdn2d(x, f, up=[upx, upy], down=[dx, dy], padding=p)
        assert y.shape[3] == (6 * upx + p[0] + p[1] - 5 + dx) // dx
        assert y.shape[2] == (11 * upy + p[2] + p[3] - 3 + dy) // dy


def test_setup_filter():
    f = setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(f, torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1]) / 64)
    assert f.dtype == torch.float32
    assert setup_filter(list(range(1, 9))).shape == (8,)  # >= 8 taps stays separable
    torch.testing.assert_close(setup_filter(list(range(1, 9))).sum(), torch.tensor(1.0))
    assert setup_filter(None).shape == (1, 1) and setup_filter(None).item() == 1
    assert setup_filter(2.0).shape == (1, 1)
    assert setup_filter([1, 2], separable=True).shape == (2,)
    torch.testing.assert_close(
        setup_filter([1, 2], flip_filter=True, normalize=False), torch.tensor([[4.0, 2], [2, 1]])
    )
    torch.testing.assert_close(setup_filter([1, 1], gain=4).sum(), torch.tensor(4.0))
    torch.testing.assert_close(setup_filter([1, 1], gain=4, separable=True).sum(), torch.tensor(2.0))
    with pytest.raises(ValueError):
        setup_filter(torch.ones(2, 2, 2))


def test_helpers_use_stylegan2_padding():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    f4 = setup_filter([1, 3, 3, 1]).double()
    f3 = setup_filter([1, 2, 1]).double()
    up = upsample2d(x, f4)
    assert up.shape == (2, 3, 16, 20)
    torch.testing.assert_close(up, direct_upfirdn2d(x, f4, 2, 1, [2, 1, 2, 1], False, 4.0))
    down = downsample2d(x, f4)
    assert down.shape == (2, 3, 4, 5)
    torch.testing.assert_close(down, direct_upfirdn2d(x, f4, 1, 2, [1, 1, 1, 1], False, 1.0))
    torch.testing.assert_close(filter2d(x, f3), direct_upfirdn2d(x, f3, 1, 1, [1, 1, 1, 1], False, 1.0))
    torch.testing.assert_close(filter2d(x, f4), direct_upfirdn2d(x, f4, 1, 1, [2, 1, 2, 1], False, 1.0))
    assert filter2d(x, f3).shape == x.shape
    # extra padding adds to the rule; a separable filter gives the same result as its outer product
    sep = setup_filter([1, 3, 3, 1], separable=True).double()
    torch.testing.assert_close(upsample2d(x, sep, padding=[1, 0, 0, 2]), upsample2d(x, f4, padding=[1, 0, 0, 2]))
    torch.testing.assert_close(
        downsample2d(x, sep, down=[2, 1]), direct_upfirdn2d(x, sep, 1, [2, 1], [1, 1, 2, 1], False, 1.0)
    )
    # a constant image stays constant away from the border (normalised filter, upsampling gain up**2)
    const = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(upsample2d(const, f4)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12, dtype=torch.float64))


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="4-D"):
        upfirdn2d(torch.zeros(3, 4, 4), None)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="smaller than the filter"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ValueError, match="up"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, up=0)


GRAD_CASES = [
    dict(up=2, padding=[2, 1, 2, 1]),
    dict(down=2, padding=1, flip_filter=True, gain=2.0),
    dict(up=[1, 2], down=[3, 1], padding=[1, 2, -1, 3]),
    dict(up=3, down=2, padding=[2, -1, 0, 1], gain=0.5),
]


@pytest.mark.parametrize("case", GRAD_CASES)
@pytest.mark.parametrize("ftype", ["2d", "sep"])
def test_gradcheck_and_gradgradcheck(case, ftype):
    torch.manual_seed(3)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 4, dtype=torch.float64) if ftype == "2d" else torch.randn(4, dtype=torch.float64)
    fn = lambda x: upfirdn2d(x, f, **case)  # noqa: E731
    # fast_mode checks random projections of the Jacobians (full matrices only for the first case: time budget)
    fast = case is not GRAD_CASES[0]
    assert gradcheck(fn, (x,), fast_mode=fast)
    assert gradgradcheck(fn, (x,), fast_mode=fast)


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradient_is_the_transposed_op(case):
    """dx = upfirdn2d(dy, f, up=down, down=up, padding=p', flip_filter=not flip, gain) (NVIDIA's formula)."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 4, dtype=torch.float64)
    y = upfirdn2d(x, f, **case)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    upx, upy = (case.get("up", 1),) * 2 if isinstance(case.get("up", 1), int) else case["up"]
    downx, downy = (case.get("down", 1),) * 2 if isinstance(case.get("down", 1), int) else case["down"]
    px0, px1, py0, py1 = as4(case["padding"])
    fh, fw = f.shape
    ih, iw, oh, ow = x.shape[2], x.shape[3], y.shape[2], y.shape[3]
    p = [
        fw - px0 - 1,
        iw * upx - ow * downx + px0 - upx + 1,
        fh - py0 - 1,
        ih * upy - oh * downy + py0 - upy + 1,
    ]
    flip = not case.get("flip_filter", False)
    expected = upfirdn2d(
        dy, f, up=[downx, downy], down=[upx, upy], padding=p, flip_filter=flip, gain=case.get("gain", 1)
    )
    torch.testing.assert_close(dx, expected)


def test_output_independent_of_input_keeps_the_graph():
    """up 4, down 2, a 1x1 filter and padding 1: no output pixel lands on an input pixel. The output is zeros
    and the gradient is zeros (NVIDIA's reference), for both formulations, not an autograd error."""
    f = torch.ones(1, 1)
    for filt in (f, f.clone().requires_grad_(True)):
        x = torch.randn(1, 2, 4, 4, requires_grad=True)
        y = upfirdn2d(x, filt, up=4, down=2, padding=1)
        assert y.shape == (1, 2, 9, 9) and torch.count_nonzero(y) == 0
        (dx,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(dx, torch.zeros_like(x))


@pytest.mark.parametrize("case", GRAD_CASES)
@pytest.mark.parametrize("ftype", ["2d", "sep"])
def test_grad_path_matches_no_grad_forward(case, ftype):
    """With autograd recording (x needs a gradient) the forward runs the no-grad formulation: same values."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, 9, 8)
    f = torch.rand(3, 4) if ftype == "2d" else torch.rand(4)
    with torch.no_grad():
        expected = upfirdn2d(x, f, **case)
    got = upfirdn2d(x.requires_grad_(True), f, **case)
    assert got.grad_fn is not None
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
