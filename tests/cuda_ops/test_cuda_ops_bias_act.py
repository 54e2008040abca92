"""bias_act reference against torch's own activation modules, written independently of cuda_ops."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from cuda_ops import ACTIVATIONS, bias_act

# act -> (torch module computing the activation, default alpha, default gain), as NVIDIA's table.
EXPECTED = {
    "linear": (nn.Identity(), 0.0, 1.0),
    "relu": (nn.ReLU(), 0.0, math.sqrt(2)),
    "lrelu": (nn.LeakyReLU(0.2), 0.2, math.sqrt(2)),
    "tanh": (nn.Tanh(), 0.0, 1.0),
    "sigmoid": (nn.Sigmoid(), 0.0, 1.0),
    "elu": (nn.ELU(), 0.0, 1.0),
    "selu": (nn.SELU(), 0.0, 1.0),
    "softplus": (nn.Softplus(), 0.0, 1.0),
    "swish": (nn.SiLU(), 0.0, math.sqrt(2)),
}


def test_activation_table_defaults():
    assert set(ACTIVATIONS) == set(EXPECTED)
    for act, (_, alpha, gain) in EXPECTED.items():
        assert ACTIVATIONS[act].def_alpha == pytest.approx(alpha)
        assert ACTIVATIONS[act].def_gain == pytest.approx(gain)


@pytest.mark.parametrize("act", sorted(EXPECTED))
def test_default_alpha_gain_and_bias(act):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64) * 3
    b = torch.randn(5, dtype=torch.float64)
    module, _, gain = EXPECTED[act]
    expected = module(x + b.view(1, 5, 1, 1)) * gain
    torch.testing.assert_close(bias_act(x, b, act=act), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias_act(x, act=act), module(x) * gain, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", sorted(EXPECTED))
def test_explicit_alpha_gain_clamp(act):
    torch.manual_seed(1)
    x = torch.randn(4, 7, dtype=torch.float64) * 4
    b = torch.randn(7, dtype=torch.float64)
    y = bias_act(x, b, act=act, alpha=0.1, gain=1.7, clamp=0.9)
    module = nn.LeakyReLU(0.1) if act == "lrelu" else EXPECTED[act][0]
    expected = torch.minimum(
        torch.maximum(module(x + b) * 1.7, torch.tensor(-0.9, dtype=x.dtype)), torch.tensor(0.9, dtype=x.dtype)
    )
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    assert y.abs().max() <= 0.9


def test_elu_ignores_alpha_like_nvidia():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(bias_act(x, act="elu", alpha=0.5), torch.where(x >= 0, x, torch.exp(x) - 1))


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1])
def test_bias_along_any_dim(dim):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    b = torch.randn(x.shape[dim], dtype=torch.float64)
    shape = [1] * 4
    shape[dim] = -1
    expected = torch.nn.functional.leaky_relu(x + b.reshape(shape), 0.2) * math.sqrt(2)
    torch.testing.assert_close(bias_act(x, b, dim=dim, act="lrelu"), expected)


def test_channels_last_input():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 5, 4).contiguous(memory_format=torch.channels_last)
    b = torch.randn(6)
    y = bias_act(x, b, act="lrelu", clamp=1.0)
    expected = (torch.nn.functional.leaky_relu(x.contiguous() + b[:, None, None], 0.2) * math.sqrt(2)).clamp(-1, 1)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_keeps_dtype(dtype):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 4)
    b = torch.randn(3)
    y = bias_act(x.to(dtype), b, act="lrelu")  # fp32 bias is cast to x.dtype
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), bias_act(x, b, act="lrelu"), rtol=2e-2, atol=2e-2)


def test_bad_inputs_fail_clearly():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="bias of shape"):
        bias_act(x, torch.zeros(4), dim=1)
    with pytest.raises(ValueError, match="out of range"):
        bias_act(x, torch.zeros(3), dim=5)
    with pytest.raises(ValueError, match="PAPERLAB_CUDA_OPS|impl"):
        bias_act(x, impl="fast")


@pytest.mark.parametrize("act", sorted(EXPECTED))
def test_gradcheck_and_gradgradcheck(act):
    torch.manual_seed(5)
    # Keep x + b away from the kinks (0 for relu/lrelu) and the clamp edge, where finite differences break.
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.3 * x.sign()).requires_grad_(True)
    b = torch.tensor([0.05, -0.04, 0.02], dtype=torch.float64, requires_grad=True)
    clamp = 100.0 if act in ("relu", "lrelu", "linear") else 0.8
    fn = lambda x, b: bias_act(x, b, act=act, gain=1.3, clamp=clamp)  # noqa: E731
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


def test_double_backward_r1_style():
    """R1-style penalty: d/dparams of |d out / d x|^2 flows through bias_act's first derivative."""
    torch.manual_seed(6)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def penalty(w, b):
        out = bias_act(x @ w, b, act="lrelu").sum()
        (gx,) = torch.autograd.grad(out, x, create_graph=True)
        return gx.square().sum()

    assert gradcheck(penalty, (w, b))


@pytest.mark.parametrize("act", ["relu", "lrelu"])
@pytest.mark.parametrize("dim", [1, 2])
def test_unclamped_linear_units_take_the_saved_output_path(act, dim):
    """relu/lrelu without clamp on CPU run as one autograd node that saves only its output (NVIDIA's scheme):
    values and first and second derivatives equal the plain-torch reference, and gradcheck/gradgradcheck pass."""
    from cuda_ops._bias_act import _LinearUnitRef, bias_act_ref

    torch.manual_seed(7)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.3 * x.sign()).requires_grad_(True)  # away from the kink
    b = (0.05 * torch.randn(x.shape[dim], dtype=torch.float64)).requires_grad_(True)
    out = bias_act(x, b, dim=dim, act=act, gain=1.3)
    assert type(out.grad_fn).__name__ == _LinearUnitRef.__name__ + "Backward"
    ref = bias_act_ref(x, b, dim, act, None, 1.3, None)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    g = torch.randn_like(out)
    got = torch.autograd.grad((out * g).sum(), (x, b), create_graph=True)
    want = torch.autograd.grad((ref * g).sum(), (x, b), create_graph=True)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c)
    # second order through the first derivative (R1 / path length): d/db of |dL/dx|^2 * (x-dependent weight)
    h_got = torch.autograd.grad((got[0].square() * x).sum(), b, allow_unused=True)[0]
    h_want = torch.autograd.grad((want[0].square() * x).sum(), b, allow_unused=True)[0]
    assert (h_got is None and h_want is None) or torch.allclose(
        h_got if h_got is not None else torch.zeros_like(b), h_want if h_want is not None else torch.zeros_like(b)
    )
    fn = lambda x, b: bias_act(x, b, dim=dim, act=act, gain=1.3)  # noqa: E731
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))
    with torch.no_grad():
        assert bias_act(x, b, dim=dim, act=act, gain=1.3).grad_fn is None
