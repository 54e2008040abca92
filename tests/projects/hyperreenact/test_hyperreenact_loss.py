"""HyperReenact losses against values computed by hand (shared terms: tests/common/face/test_face_losses.py)."""

from __future__ import annotations

import pytest
import torch

from projects.hyperreenact.loss import lpips_loss, pixel_l1, weighted_total


def test_pixel_l1_on_255_scale():
    x = torch.zeros(1, 3, 2, 2)
    y = torch.full((1, 3, 2, 2), 0.5)  # 0.5 in [-1,1] units = 63.75 on [0,255]
    assert pixel_l1(x, y).item() == pytest.approx(63.75)
    assert pixel_l1(x, y, value_range=2.0).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_l1(x, y[:, :2])


def test_lpips_loss_averages_per_sample_distances():
    def fake(x, y):
        return (x - y).flatten(1).sum(1)

    x = torch.ones(2, 3, 1, 1)
    y = torch.zeros(2, 3, 1, 1)
    y[1] = -1
    assert lpips_loss(fake, x, y).item() == pytest.approx((3 + 6) / 2)


def test_weighted_total():
    terms = {"l1": torch.tensor(2.0), "id": torch.tensor(0.5)}
    assert weighted_total(terms, {"l1": 1.0, "id": 10.0, "lpips": 10.0}).item() == pytest.approx(7.0)
    with pytest.raises(KeyError):
        weighted_total(terms, {"l1": 1.0})
