"""Batched face analysis with the tiny stand-ins; Euler angles; FLAME stand-in interface."""

from __future__ import annotations

import math

import pytest
import torch

from common.face.flame import axis_angle_to_euler as euler_degrees
from common.face.flame import batch_rodrigues as axis_angle_to_matrix
from projects.stylemask.faces import TinyFLAME, build_face_analyzer


def test_euler_degrees_by_hand():
    a = 0.3
    # rotation about x: R21 = sin a, R22 = cos a -> pitch = a; about z: R10 = sin a, R00 = cos a -> roll = a
    got = euler_degrees(torch.tensor([[a, 0.0, 0.0], [0.0, 0.0, a], [0.0, a, 0.0]]))
    d = math.degrees(a)
    assert torch.allclose(got[0], torch.tensor([0.0, d, 0.0]), atol=1e-4)
    assert torch.allclose(got[1], torch.tensor([0.0, 0.0, d]), atol=1e-4)
    # rotation about y: R20 = -sin a -> yaw = -a (DECA's convention: yaw = asin(R20))
    assert torch.allclose(got[2], torch.tensor([-d, 0.0, 0.0]), atol=1e-4)
    r = axis_angle_to_matrix(torch.randn(4, 3))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5)


def test_tiny_flame_interface():
    flame = TinyFLAME()
    shape, exp, pose = torch.zeros(2, 100), torch.zeros(2, 50), torch.zeros(2, 6)
    v, lm = flame(shape, exp, pose)
    assert v.shape == (2, 300, 3) and lm.shape == (2, 68, 3)
    assert torch.allclose(v[0], flame.template, atol=1e-6)
    pose[1, 3] = 0.2  # jaw opening moves only the lower vertices
    v2, _ = flame(shape, exp, pose)
    moved = (v2[1] - v[1]).abs().sum(1) > 1e-6
    assert moved.any() and not moved[flame.lower == 0].any()


def test_batched_analysis_equals_per_image():
    torch.manual_seed(0)
    faces = build_face_analyzer("tiny").eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        c, e = faces.coefficients(x), faces.embed(x)
        for i in range(5):
            ci, ei = faces.coefficients(x[i : i + 1]), faces.embed(x[i : i + 1])
            assert torch.allclose(ci["exp"], c["exp"][i : i + 1], atol=1e-5)
            assert torch.allclose(ci["angles"], c["angles"][i : i + 1], atol=1e-4)
            assert torch.allclose(ei, e[i : i + 1], atol=1e-5)
    assert e.shape == (5, 64) and torch.allclose(e.norm(dim=1), torch.ones(5))
    assert c["shape"].shape == (5, 100) and c["pose"].shape == (5, 6) and c["angles"].shape == (5, 3)


def test_gradient_reaches_images_through_crop_and_encoder():
    faces = build_face_analyzer("tiny")
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    c = faces.coefficients(x)
    (c["exp"].sum() + faces.embed(x).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_options():
    with pytest.raises(ValueError, match="face_models"):
        build_face_analyzer("large")
