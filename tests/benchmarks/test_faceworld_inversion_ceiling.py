"""The landmark-region pixel metric of the inversion-ceiling benchmark, against hand computations."""

import math

import pytest
import torch

from benchmarks.faceworld_inversion_ceiling import masked_psnr, near


def test_near_marks_the_pixels_within_the_radius():
    pts = torch.tensor([[[2.5, 1.5]]])  # the centre of pixel (row 1, col 2)
    m = near(pts, 5, radius=1.01)
    rows, cols = torch.nonzero(m[0, 0], as_tuple=True)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 2), (1, 1), (1, 2), (1, 3), (2, 2)]
    assert m.shape == (1, 1, 5, 5)


def test_masked_psnr_by_hand():
    b = torch.zeros(2, 3, 1, 2)
    a = b.clone()
    a[0, :, 0, 0] = 0.2  # image 0: squared error 0.04 in the mask
    a[0, :, 0, 1] = 1.0  # outside the mask: ignored
    a[1, 0, 0, 0] = 0.3  # image 1: 0.09 on one channel of three
    mask = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])
    want = (10 * math.log10(4 / 0.04) + 10 * math.log10(4 / 0.03)) / 2
    assert masked_psnr(a, b, mask) == pytest.approx(want, rel=1e-6)
