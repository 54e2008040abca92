"""The autograd Functions of the CUDA path, run on CPU with the kernel launches replaced by emulations.

This checks what can be checked without a GPU: the first/second-derivative assembly of bias_act (modes 0, 1, 2
and the bias reductions) and the transposed-op gradient of upfirdn2d (padding formula, flip, gain, separable
routing), against the reference. The kernels themselves are checked by the gpu-marked tests.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from cuda_ops import ACTIVATIONS, bias_act_ref, upfirdn2d_ref
from cuda_ops import _cuda_autograd as ca


def fake_bias_act_call(x, b, g, g2, mode, dim, spec, alpha, gain, clamp):
    """What the kernel computes, from torch autograd on detached inputs (no graph leaves this function)."""
    with torch.enable_grad():
        s = x.detach().clone()
        if b is not None:
            s = s + b.detach().reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        s = s.detach().requires_grad_(True)
        f = spec.func(s, alpha)
        (d1,) = torch.autograd.grad(f.sum(), s, create_graph=True)
        d2 = torch.autograd.grad(d1.sum(), s, allow_unused=True)[0] if d1.requires_grad else None
    f, d1 = f.detach(), d1.detach()
    d2 = torch.zeros_like(f) if d2 is None else d2.detach()
    y = f * gain
    keep = torch.ones_like(y, dtype=torch.bool) if clamp < 0 else (y >= -clamp) & (y <= clamp)
    if mode == 0:
        return y.clamp(-clamp, clamp) if clamp >= 0 else y
    if mode == 1:
        return torch.where(keep, g.detach() * d1 * gain, torch.zeros_like(y))
    return torch.where(keep, g.detach() * g2.detach() * d2 * gain, torch.zeros_like(y))


def fake_upfirdn2d_launch(x, f, upx, upy, downx, downy, px0, px1, py0, py1):
    with torch.no_grad():
        return upfirdn2d_ref(x, f.to(x.dtype), [upx, upy], [downx, downy], [px0, px1, py0, py1], flip_filter=True)


@pytest.fixture
def fake_kernels(monkeypatch):
    calls = {"bias_act": 0, "upfirdn2d": 0}

    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ca, "_bias_act_call", count("bias_act", fake_bias_act_call))
    monkeypatch.setattr(ca, "_upfirdn2d_launch", count("upfirdn2d", fake_upfirdn2d_launch))
    return calls


@pytest.mark.parametrize("act", ["linear", "lrelu", "tanh", "swish", "softplus", "elu"])
def test_bias_act_function_first_and_second_order(fake_kernels, act):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.3 * x.sign()).requires_grad_(True)
    b = torch.tensor([0.05, -0.04, 0.02], dtype=torch.float64, requires_grad=True)
    spec = ACTIVATIONS[act]
    clamp = 0.9 if spec.has_2nd_grad else -1.0
    fn = lambda x, b: ca.bias_act_cuda(x, b, 1, spec, spec.def_alpha, 1.3, clamp)  # noqa: E731
    ref = bias_act_ref(x, b, 1, act, None, 1.3, clamp if clamp >= 0 else None)
    torch.testing.assert_close(fn(x, b), ref)
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))
    assert fake_kernels["bias_act"] > 0
    # an R1-style penalty through both paths: d/d(x, b) of |d sum(y^2) / dx|^2
    results = []
    for impl in (fn, lambda x, b: bias_act_ref(x, b, 1, act, None, 1.3, clamp if clamp >= 0 else None)):
        (gx,) = torch.autograd.grad(impl(x, b).square().sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), (x, b)))
    torch.testing.assert_close(results[0], results[1])


def test_bias_act_function_third_order_raises(fake_kernels):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    spec = ACTIVATIONS["tanh"]
    y = ca.bias_act_cuda(x, None, 1, spec, 0.0, 1.0, -1.0)
    (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(g2.sum(), x)


CASES = [
    dict(up=(2, 2), down=(1, 1), pad=(2, 1, 2, 1), flip=False, gain=4.0),
    dict(up=(1, 1), down=(2, 2), pad=(1, 1, 1, 1), flip=True, gain=1.0),
    dict(up=(3, 1), down=(1, 2), pad=(2, -1, 0, 3), flip=False, gain=0.5),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ftype", ["2d", "sep4", "sep5"])
def test_upfirdn2d_function_gradients(fake_kernels, case, ftype):
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    f = {"2d": torch.randn(3, 4), "sep4": torch.randn(4), "sep5": torch.randn(5)}[ftype]
    args = (case["up"], case["down"], case["pad"], case["flip"], case["gain"])
    fn = lambda x: ca.upfirdn2d_cuda(x, f, *args)  # noqa: E731
    ref = upfirdn2d_ref(x, f, case["up"], case["down"], case["pad"], case["flip"], case["gain"])
    torch.testing.assert_close(fn(x), ref, rtol=1e-6, atol=1e-6)  # float32 filter products
    assert gradcheck(fn, (x,), fast_mode=True)
    assert gradgradcheck(fn, (x,), fast_mode=True)
    dy = torch.randn_like(ref)
    (dx,) = torch.autograd.grad(fn(x), x, dy)
    (dx_ref,) = torch.autograd.grad(ref, x, dy)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert fake_kernels["upfirdn2d"] > 0


def test_upfirdn2d_function_rejects_filter_grad(fake_kernels):
    with pytest.raises(ValueError, match="filter gradient"):
        ca.upfirdn2d_cuda(
            torch.randn(1, 1, 4, 4), torch.ones(2, 2, requires_grad=True), (1, 1), (1, 1), (0,) * 4, False, 1.0
        )
