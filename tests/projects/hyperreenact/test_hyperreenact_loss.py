"""HyperReenact losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from projects.hyperreenact.loss import (
    EYE_PAIRS,
    MOUTH_PAIRS,
    eye_loss,
    ground_truth_coefficients,
    identity_loss,
    lpips_loss,
    mouth_loss,
    pixel_l1,
    shape_loss,
    weighted_total,
    with_fixed_cam,
)


def test_pixel_l1_on_255_scale():
    x = torch.zeros(1, 3, 2, 2)
    y = torch.full((1, 3, 2, 2), 0.5)  # 0.5 in [-1,1] units = 63.75 on [0,255]
    assert pixel_l1(x, y).item() == pytest.approx(63.75)
    assert pixel_l1(x, y, value_range=2.0).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_l1(x, y[:, :2])


def test_identity_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    # cos = 0 and 1 -> losses 1 and 0 -> mean 0.5
    assert identity_loss(a, b).item() == pytest.approx(0.5)
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert identity_loss(a, c).item() == pytest.approx((0 + (1 - 1 / math.sqrt(2))) / 2)


def test_lpips_loss_averages_per_sample_distances():
    def fake(x, y):
        return (x - y).flatten(1).sum(1)

    x = torch.ones(2, 3, 1, 1)
    y = torch.zeros(2, 3, 1, 1)
    y[1] = -1
    assert lpips_loss(fake, x, y).item() == pytest.approx((3 + 6) / 2)


def test_shape_loss_by_hand():
    gt = torch.zeros(1, 2, 3)
    out = torch.tensor([[[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]])
    assert shape_loss(gt, out).item() == pytest.approx(6 / 6)


def test_eye_and_mouth_losses_by_hand():
    gt = torch.zeros(2, 68, 2)
    out = torch.zeros(2, 68, 2)
    # open one eye pair (37, 41) vertically by 3 in the output of sample 0: |d_gt - d| = 3 on one coordinate
    out[0, 41, 1] = 3.0
    # mean over 6 pairs x 2 samples x 2 coords
    assert eye_loss(gt, out).item() == pytest.approx(3.0 / (6 * 2 * 2))
    assert mouth_loss(gt, out).item() == 0.0
    # the sign of the offset does not matter (distances are absolute)
    out[0, 41, 1] = -3.0
    assert eye_loss(gt, out).item() == pytest.approx(3.0 / 24)
    # mouth: corners (48, 54) 4 apart in x in the ground truth, 1 apart in the output
    gt[:, 54, 0] = 4.0
    out2 = torch.zeros(2, 68, 2)
    out2[:, 54, 0] = 1.0
    assert mouth_loss(gt, out2).item() == pytest.approx(3.0 * 2 / (10 * 2 * 2))
    assert len(EYE_PAIRS) == 6 and len(MOUTH_PAIRS) == 10


def test_ground_truth_coefficients_and_fixed_cam():
    src = {"shape": torch.ones(2, 4), "exp": torch.zeros(2, 3), "pose": torch.zeros(2, 6), "cam": torch.ones(2, 3)}
    tgt = {"shape": torch.zeros(2, 4), "exp": torch.ones(2, 3), "pose": torch.ones(2, 6), "cam": torch.ones(2, 3)}
    gt = ground_truth_coefficients(src, tgt)
    assert torch.equal(gt["shape"], src["shape"]) and torch.equal(gt["exp"], tgt["exp"])
    assert torch.equal(gt["pose"], tgt["pose"])
    assert gt["cam"].tolist() == [[8.0, 0.0, 0.0]] * 2
    own = with_fixed_cam(tgt)
    assert own["cam"].tolist() == [[8.0, 0.0, 0.0]] * 2 and torch.equal(own["shape"], tgt["shape"])
    # the inputs are not modified (the sibling overwrote cam in place)
    assert tgt["cam"].eq(1).all()


def test_weighted_total():
    terms = {"l1": torch.tensor(2.0), "id": torch.tensor(0.5)}
    assert weighted_total(terms, {"l1": 1.0, "id": 10.0, "lpips": 10.0}).item() == pytest.approx(7.0)
    with pytest.raises(KeyError):
        weighted_total(terms, {"l1": 1.0})
