"""rosinality-compatible wrappers against the native ops with converted arguments."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cuda_ops import bias_act, setup_filter, upfirdn2d, upsample2d
from cuda_ops.rosinality import FusedLeakyReLU, fused_leaky_relu
from cuda_ops.rosinality import upfirdn2d as r_upfirdn2d


def test_fused_leaky_relu_matches_bias_act_and_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 4)
    b = torch.randn(5)
    y = fused_leaky_relu(x, b)
    torch.testing.assert_close(y, bias_act(x, b, act="lrelu"))
    torch.testing.assert_close(y, F.leaky_relu(x + b.view(1, 5, 1, 1), 0.2) * math.sqrt(2))
    # the slope is honoured on CPU too (rosinality's CPU path hard-codes 0.2)
    y = fused_leaky_relu(x, b, negative_slope=0.1, scale=1.5)
    torch.testing.assert_close(y, F.leaky_relu(x + b.view(1, 5, 1, 1), 0.1) * 1.5)
    # 2-D input (the mapping network's EqualLinear) and no bias
    x2 = torch.randn(3, 5)
    torch.testing.assert_close(fused_leaky_relu(x2, b), F.leaky_relu(x2 + b, 0.2) * math.sqrt(2))
    torch.testing.assert_close(fused_leaky_relu(x2), F.leaky_relu(x2, 0.2) * math.sqrt(2))


def test_fused_leaky_relu_module_keys_and_grad():
    m = FusedLeakyReLU(6)
    assert list(m.state_dict()) == ["bias"]
    assert m.bias.shape == (6,) and torch.all(m.bias == 0)
    m.load_state_dict({"bias": torch.arange(6.0)})
    x = torch.randn(2, 6, 3, 3, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, F.leaky_relu(x + torch.arange(6.0).view(1, 6, 1, 1), 0.2) * math.sqrt(2))
    y.sum().backward()
    assert m.bias.grad is not None and m.bias.grad.shape == (6,)
    assert FusedLeakyReLU(4, bias=False).bias is None


def test_upfirdn2d_pad_pair_means_x0_x1_y0_y1():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    k = torch.randn(3, 4, dtype=torch.float64)
    for up, down, pad in [(1, 1, (0, 0)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (3, -1))]:
        y = r_upfirdn2d(x, k, up=up, down=down, pad=pad)
        native = upfirdn2d(x, k, up=up, down=down, padding=[pad[0], pad[1], pad[0], pad[1]])
        torch.testing.assert_close(y, native)
    # NVIDIA's two-element padding means [x, y]: a different result for an asymmetric pair
    nv_pair = upfirdn2d(x, k, up=2, padding=[2, 1])
    assert nv_pair.shape != r_upfirdn2d(x, k, up=2, pad=(2, 1)).shape or not torch.allclose(
        nv_pair, r_upfirdn2d(x, k, up=2, pad=(2, 1))
    )


def test_rosinality_upsample_layer_equals_upsample2d():
    """rosinality Upsample(kernel=[1,3,3,1], factor=2): kernel = normalised outer product * factor**2,
    pad = ((p + 1) // 2 + factor - 1, p // 2) with p = 4 - factor."""
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 8)
    k = torch.tensor([1.0, 3, 3, 1])
    kernel = k[:, None] * k[None, :]
    kernel = kernel / kernel.sum() * 4
    p = 4 - 2
    y = r_upfirdn2d(x, kernel, up=2, down=1, pad=((p + 1) // 2 + 1, p // 2))
    torch.testing.assert_close(y, upsample2d(x, setup_filter([1, 3, 3, 1])))
