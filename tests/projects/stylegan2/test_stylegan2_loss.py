"""StyleGAN2 losses and regularisers against hand computations; DiffAugment's transformations."""

from __future__ import annotations

import math

import pytest
import torch

from projects.stylegan2.augment import cutout, diff_augment, parse_policy, translation
from projects.stylegan2.loss import (
    d_logistic_loss,
    d_r1_loss,
    g_nonsaturating_loss,
    g_path_regularize,
    path_lengths,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_logistic_losses_by_hand():
    real = torch.tensor([[1.0], [-2.0]])
    fake = torch.tensor([[0.5], [3.0]])
    expected_d = (softplus(-1.0) + softplus(2.0)) / 2 + (softplus(0.5) + softplus(3.0)) / 2
    assert float(d_logistic_loss(real, fake)) == pytest.approx(expected_d, rel=1e-6)
    assert float(g_nonsaturating_loss(fake)) == pytest.approx((softplus(-0.5) + softplus(-3.0)) / 2, rel=1e-6)


def test_r1_on_a_tiny_network_value_and_gradient():
    # D(x) = sum(a * x) + sum(b * x^2) per sample: dD/dx = a + 2 b x, R1 = mean_b sum (a + 2 b x)^2
    torch.manual_seed(0)
    a = torch.randn(1, 2, 3, 3, requires_grad=True)
    b = torch.randn(1, 2, 3, 3, requires_grad=True)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    pred = (a * x + b * x**2).flatten(1).sum(1, keepdim=True)
    r1 = d_r1_loss(pred, x)
    g = a + 2 * b * x
    expected = (g.detach() ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(r1.detach(), expected)
    r1.backward()  # the penalty's gradient reaches D's parameters (double backward)
    torch.testing.assert_close(a.grad, (2 * g).mean(0, keepdim=True).detach())
    torch.testing.assert_close(b.grad, (2 * g * 2 * x).mean(0, keepdim=True).detach())
    with pytest.raises(ValueError, match="must require grad"):
        d_r1_loss(pred, x.detach())


def test_path_length_on_a_linear_generator_by_hand():
    # img_b = reshape(A @ vec(w_b)): J^T y = A^T y, |J^T y| = sqrt(mean over L of sum over D of (A^T y)^2)
    torch.manual_seed(0)
    B, L, D, H = 3, 4, 5, 2
    A = torch.randn(3 * H * H, L * D, requires_grad=True)
    w = torch.randn(B, L, D, requires_grad=True)
    img = (w.reshape(B, L * D) @ A.T).reshape(B, 3, H, H)
    noise = torch.randn(B, 3, H, H)
    pl = path_lengths(img, w, noise)
    y = (noise / H).reshape(B, -1)
    jty = (y @ A).reshape(B, L, D).detach()
    expected = jty.pow(2).sum(2).mean(1).sqrt()
    torch.testing.assert_close(pl.detach(), expected)

    mean0 = torch.tensor(0.3)
    penalty, new_mean, pl2 = g_path_regularize(img, w, mean0, decay=0.01, noise=noise)
    a = 0.3 + 0.01 * (expected.mean() - 0.3)
    torch.testing.assert_close(new_mean, a)
    torch.testing.assert_close(penalty.detach(), (expected - a).pow(2).mean())
    assert not new_mean.requires_grad

    # the gradient includes the path through the running mean (as the official code), checked numerically
    def value(A_: torch.Tensor) -> torch.Tensor:
        jty_ = (y @ A_).reshape(B, L, D)
        p = jty_.pow(2).sum(2).mean(1).sqrt()
        return (p - (0.3 + 0.01 * (p.mean() - 0.3))).pow(2).mean()

    penalty.backward()
    Ad = A.detach().double().requires_grad_(True)
    y = y.double()
    value(Ad).backward()
    torch.testing.assert_close(A.grad.double(), Ad.grad, rtol=1e-4, atol=1e-6)


def test_path_regularize_batch_mean_replaces_the_value_only():
    torch.manual_seed(1)
    A = torch.randn(12, 6, requires_grad=True)
    w = torch.randn(2, 2, 3, requires_grad=True)
    img = (w.reshape(2, 6) @ A.T).reshape(2, 3, 2, 2)
    noise = torch.randn(2, 3, 2, 2)
    _, new_mean, pl = g_path_regularize(img, w, 0.0, decay=0.5, noise=noise, batch_mean=lambda m: m * 0 + 7.0)
    assert float(new_mean) == pytest.approx(3.5)  # 0 + 0.5 * (7 - 0)


def test_diffaugment_shapes_gradients_and_policy():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    y = diff_augment(x, "color,translation,cutout", g)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(diff_augment(x, "color,translation", g1), diff_augment(x, "color,translation", g2))
    with pytest.raises(ValueError, match="unknown \\['zoom'\\]"):
        parse_policy("color,zoom")


def test_translation_is_an_integer_shift_with_zero_fill():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8) + 1
    g = torch.Generator().manual_seed(5)
    y = translation(x, ratio=0.25, generator=g)
    g = torch.Generator().manual_seed(5)
    ty = torch.randint(-2, 3, (2, 1, 1), generator=g).flatten().tolist()
    tx = torch.randint(-2, 3, (2, 1, 1), generator=g).flatten().tolist()
    for b in range(2):
        for i in range(8):
            for j in range(8):
                si, sj = i + ty[b], j + tx[b]
                expected = x[b, 0, si, sj] if 0 <= si < 8 and 0 <= sj < 8 else 0.0
                assert float(y[b, 0, i, j]) == float(expected)


def test_cutout_zeroes_one_square_per_sample():
    x = torch.ones(6, 2, 8, 8)
    y = cutout(x, ratio=0.5, generator=torch.Generator().manual_seed(2))
    for b in range(6):
        zero = (y[b, 0] == 0).nonzero()
        assert 1 <= len(zero) <= 16
        rows, cols = zero[:, 0].unique(), zero[:, 1].unique()
        assert len(zero) == len(rows) * len(cols)  # a rectangle (a 4x4 square clipped at the border)
        assert torch.equal(y[b, 0] == 0, y[b, 1] == 0)
