"""The straightforward formulation the benchmarks compare against, and the context manager that swaps it in."""

from __future__ import annotations

import pytest
import torch

import common.stylegan2.layers as layers
import cuda_ops.rosinality as ros
from benchmarks._util import straightforward_bias_act, straightforward_ops, straightforward_upfirdn2d
from common.stylegan2 import Generator
from cuda_ops import bias_act, upfirdn2d


@pytest.mark.parametrize(
    "up, down, padding, flip, gain",
    [(1, 1, 0, False, 1), (2, 1, [2, 1, 1, 2], False, 4), (1, 2, [1, 1, -1, 0], True, 1.5), ([2, 3], [3, 2], [1, 2, 3, 4], False, 2)],
)  # fmt: skip
def test_straightforward_upfirdn2d_equals_ours(up, down, padding, flip, gain):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    for f in (torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64), None):
        ours = upfirdn2d(x, f, up, down, padding, flip, gain)
        torch.testing.assert_close(straightforward_upfirdn2d(x, f, up, down, padding, flip, gain), ours)
    b = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(straightforward_bias_act(x, b, act="lrelu"), bias_act(x, b, act="lrelu"))


def test_context_swaps_every_op_and_restores():
    originals = (layers.upfirdn2d, layers.fused_leaky_relu, ros.fused_leaky_relu, layers.ModulatedConv2d._grouped)
    torch.manual_seed(0)
    g = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=8).double()
    w = torch.randn(2, g.n_latent, 16, dtype=torch.float64)
    calls = []
    with straightforward_ops() as n:
        assert n >= 4 and layers.upfirdn2d is not originals[0] and ros.fused_leaky_relu is not originals[2]
        inner = layers.upfirdn2d
        layers.upfirdn2d = lambda *a, **k: calls.append(1) or inner(*a, **k)
        naive = g.synthesis(w.requires_grad_(True))  # grad flows, yet the grouped conv (rosinality's only path)
        layers.upfirdn2d = inner
        assert layers.ModulatedConv2d._grouped(g.conv1.conv, w[:, 0], w[:, 0]) is True
    assert calls  # the generator's blur and upsampling went through the swapped op
    assert (
        layers.upfirdn2d,
        layers.fused_leaky_relu,
        ros.fused_leaky_relu,
        layers.ModulatedConv2d._grouped,
    ) == originals
    torch.testing.assert_close(naive, g.synthesis(w))
