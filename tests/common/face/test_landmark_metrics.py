"""Landmark errors (pixels, interocular-normalised) and the face world's expression ranges, against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from common.metrics.face import faceworld_expression_ranges, landmark_nme, landmark_pixel_error


def _face(scale: float = 1.0) -> torch.Tensor:
    """68 points at zero except the outer eye corners (36, 45), 10 * scale pixels apart."""
    lm = torch.zeros(68, 2)
    lm[36] = torch.tensor([0.0, 0.0])
    lm[45] = torch.tensor([10.0 * scale, 0.0])
    return lm


def test_landmark_errors_by_hand():
    target = torch.stack([_face(1.0), _face(2.0)])
    pred = target.clone()
    pred[0, 0] += torch.tensor([3.0, 4.0])  # one point 5 px off in image 0
    pred[1, :] += torch.tensor([0.0, 2.0])  # every point 2 px off in image 1
    px = landmark_pixel_error(pred, target)
    assert px.tolist() == pytest.approx([5.0 / 68, 2.0])
    nme = landmark_nme(pred, target)
    assert nme.tolist() == pytest.approx([5.0 / 68 / 10.0, 2.0 / 20.0])
    # normalisation by the ground truth, not the prediction
    assert landmark_nme(target, pred)[1] == pytest.approx(2.0 / math.hypot(20.0, 0.0))


def test_landmark_errors_refuse_bad_input():
    with pytest.raises(ValueError, match=r"\[B,N,2\]"):
        landmark_pixel_error(torch.zeros(1, 68, 3), torch.zeros(1, 68, 3))
    with pytest.raises(ValueError, match="interocular"):
        landmark_nme(torch.zeros(1, 68, 2), torch.zeros(1, 68, 2))


def test_faceworld_expression_ranges_from_the_samplers():
    from common.data import faceworld as fw

    r = faceworld_expression_ranges()
    assert r.shape == (4 + fw.EXPRESSION_DIM, 2)
    assert r[:3].tolist() == [[-40.0, 40.0], [-25.0, 25.0], [-20.0, 20.0]]  # POSE_LIMIT
    assert r[3].tolist() == pytest.approx([0.0, fw.JAW_ANGLE])
    assert r[4 + fw.EXPRESSION_NAMES.index("eye_open")].tolist() == [-1.0, 1.0]
    assert r[4 + fw.EXPRESSION_NAMES.index("smile")].tolist() == [0.0, 1.0]
    assert (r[:, 1] > r[:, 0]).all()  # no division by a zero range
    # every sampled pose and expression lies inside
    g = torch.Generator().manual_seed(0)
    pose, expr = fw.sample_pose(2000, g), fw.sample_expression(2000, g)
    assert (pose >= r[:3, 0]).all() and (pose <= r[:3, 1]).all()
    assert (expr >= r[4:, 0]).all() and (expr <= r[4:, 1]).all()
