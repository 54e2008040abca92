"""Tests of common/face/align.py: transforms, template mapping, crops, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from common.face.align import (
    ARCFACE_TEMPLATE_112,
    LandmarkDetector68,
    arcface_align,
    deca_crop,
    deca_crop_matrix,
    ffhq_align,
    ffhq_align_tensor,
    ffhq_quad,
    has_face_alignment,
    landmark_box,
    landmark_box_crop,
    landmark_box_crop_tensor,
    lm68_to_lm5,
    similarity_transform,
    warp_affine,
)


def _blobs(points: torch.Tensor, h: int, w: int, sigma: float = 1.5) -> torch.Tensor:
    """[B,N,2] points -> [B,N,h,w] images with one Gaussian blob per channel."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    dx = xs[None, None] - points[..., 0, None, None]
    dy = ys[None, None] - points[..., 1, None, None]
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))


def _peak(img: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid of the brightest region of each [B,N,h,w] channel -> [B,N,2]."""
    w = torch.clamp(img - 0.5 * img.amax((-2, -1), keepdim=True), min=0)
    ys, xs = torch.meshgrid(torch.arange(img.shape[-2]), torch.arange(img.shape[-1]), indexing="ij")
    tot = w.sum((-2, -1))
    return torch.stack([(w * xs).sum((-2, -1)) / tot, (w * ys).sum((-2, -1)) / tot], -1)


def _rot(theta: float, scale: float, tx: float, ty: float) -> torch.Tensor:
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


def test_similarity_transform_recovers_known_transform():
    torch.manual_seed(0)
    src = torch.rand(1, 7, 2, dtype=torch.float64) * 100
    m = _rot(0.3, 1.7, 5.0, -12.0)
    dst = src @ m[:, :2].T + m[:, 2]
    est = similarity_transform(src, dst)[0]
    assert torch.allclose(est, m, atol=1e-9)


def test_arcface_alignment_maps_landmarks_onto_template():
    # Landmarks = the template moved by a known similarity into a 200x180 image.
    m = _rot(-0.25, 1.6, 40.0, 30.0)
    tpl = ARCFACE_TEMPLATE_112.double()
    lm5 = (tpl @ m[:, :2].T + m[:, 2]).unsqueeze(0)
    est = similarity_transform(lm5, tpl.unsqueeze(0))
    mapped = lm5[0] @ est[0, :, :2].T + est[0, :, 2]
    assert torch.allclose(mapped, tpl, atol=1e-9)
    # Image content follows: blobs drawn at the landmarks land on the template points of the 112 crop.
    img = _blobs(lm5, 180, 200, sigma=2.5)
    out = arcface_align(img, lm5)
    assert out.shape == (1, 5, 112, 112)
    assert torch.allclose(_peak(out)[0], tpl, atol=0.15)
    # The 68-point input goes through the five-point reduction.
    lm68 = torch.rand(2, 68, 2) * 50
    five = lm68_to_lm5(lm68)
    assert torch.allclose(five[:, 0], lm68[:, 36:42].mean(1)) and torch.equal(five[:, 4], lm68[:, 54])
    assert arcface_align(torch.rand(2, 3, 64, 64), lm68).shape == (2, 3, 112, 112)
    with pytest.raises(ValueError, match="template"):
        arcface_align(img, lm5, template="nope")


def test_warp_affine_identity_and_integer_shift():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 10, 12)
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    assert torch.allclose(warp_affine(img, eye, (10, 12)), img, atol=1e-6)
    shift = torch.tensor([[1.0, 0, -2], [0, 1.0, -3]]).expand(2, 2, 3)  # output(u,v) = input(u+2, v+3)
    out = warp_affine(img, shift, (5, 6))
    assert torch.allclose(out, img[:, :, 3:8, 2:8], atol=1e-6)


def test_deca_crop_matches_independent_resampling_and_passes_gradients():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 120, 140, dtype=torch.float64)
    lm = torch.tensor([[[40.0, 30.0], [90.0, 35.0], [65.0, 95.0], [50.0, 80.0]]], dtype=torch.float64)
    out = deca_crop(img, landmarks=lm, size=32)
    # Independent: side = floor(((50)+(65))/2*1.1*1.25) = 79, centre (65, 62.5), scale 31/79.
    side = math.floor((50 + 65) / 2 * 1.1 * 1.25)
    x0, y0, s = 65 - side / 2, 62.5 - side / 2, 31 / side
    v, u = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    coords = np.stack([y0 + v / s, x0 + u / s])
    ref = np.stack([map_coordinates(img[0, c].numpy(), coords, order=1, mode="constant") for c in range(3)])
    inside = (coords[0] <= 119) & (coords[1] <= 139)
    assert np.allclose(out[0].numpy()[:, inside], ref[:, inside], atol=1e-9)
    # Detector boxes: centre moved down by 0.12 * side before scaling.
    m = deca_crop_matrix(boxes=torch.tensor([[10.0, 20.0, 110.0, 120.0]]), size=224)
    side_b = math.floor(100 * 1.25)
    assert m[0, 0, 0].item() == pytest.approx(223 / side_b)
    assert m[0, 1, 2].item() == pytest.approx(-223 / side_b * (70 + 12 - side_b / 2))
    with pytest.raises(ValueError, match="exactly one"):
        deca_crop(img)
    # Gradients reach the image and the landmarks.
    img.requires_grad_(True)
    lm2 = lm.clone().requires_grad_(True)
    deca_crop(img, landmarks=lm2, size=32).square().sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert lm2.grad is not None and torch.isfinite(lm2.grad).all() and lm2.grad.abs().sum() > 0
    lm5 = torch.tensor([[[30.0, 40.0], [70, 42], [50, 60], [35, 80], [66, 81]]], requires_grad=True)
    img2 = torch.rand(1, 3, 100, 100, requires_grad=True)
    arcface_align(img2, lm5).mean().backward()
    assert img2.grad.abs().sum() > 0 and lm5.grad.abs().sum() > 0


def _face_landmarks68(cx: float, cy: float, s: float) -> np.ndarray:
    """A crude upright 68-point layout: eyes, nose, mouth at plausible places (enough for the crops)."""
    lm = np.zeros((68, 2))
    lm[0:17] = np.stack([np.linspace(cx - s, cx + s, 17), cy + np.sin(np.linspace(0, np.pi, 17)) * s * 0.9], -1)
    lm[17:27] = np.stack([np.linspace(cx - 0.8 * s, cx + 0.8 * s, 10), np.full(10, cy - 0.6 * s)], -1)
    lm[27:36] = np.stack([np.full(9, cx), np.linspace(cy - 0.3 * s, cy + 0.2 * s, 9)], -1)
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    lm[36:42] = np.stack([cx - 0.4 * s + 0.12 * s * np.cos(ang), cy - 0.35 * s + 0.05 * s * np.sin(ang)], -1)
    lm[42:48] = np.stack([cx + 0.4 * s + 0.12 * s * np.cos(ang), cy - 0.35 * s + 0.05 * s * np.sin(ang)], -1)
    ang12 = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lm[48:60] = np.stack([cx - 0.3 * s * np.cos(ang12), cy + 0.45 * s + 0.1 * s * np.sin(ang12)], -1)
    lm[60:68] = np.stack([cx - 0.2 * s * np.cos(ang[:4].repeat(2)), np.full(8, cy + 0.45 * s)], -1)
    return lm


def _smooth_image(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w]
    img = np.stack(
        [128 + 100 * np.sin(xs / 17.0), 128 + 100 * np.cos(ys / 13.0), 128 + 60 * np.sin((xs + ys) / 23.0)], -1
    )
    return img.astype(np.uint8)


def test_ffhq_align_numpy_and_tensor_agree_and_place_the_eyes():
    lm = _face_landmarks68(200.0, 190.0, 60.0)
    img = _smooth_image(400, 420)
    out = ffhq_align(img, lm, size=128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    out_t = ffhq_align_tensor(t, torch.from_numpy(lm)[None], size=128)[0].permute(1, 2, 0).numpy()
    assert np.abs(out_t - out.astype(float)).mean() < 3.0
    # Geometry: eye centres land where the quad says (upright face: axis-aligned quad).
    quad, qsize = ffhq_quad(lm)
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    # Output pixel centre u samples the input at q0 + (u + 0.5) / 128 * qsize.
    expected = (eyes - quad[0]) / qsize * 128 - 0.5
    blobs = _blobs(torch.from_numpy(eyes)[None], 400, 420, sigma=4.0)
    warped = ffhq_align_tensor(blobs, torch.from_numpy(lm)[None], size=128)
    got = _peak(warped)[0].numpy()
    assert np.allclose(got, expected, atol=0.05)
    # Five MTCNN points give a similar square.
    lm5 = np.stack([eyes[0], eyes[1], lm[30], lm[48], lm[54]])
    q5, s5 = ffhq_quad(lm5)
    assert np.allclose(q5, quad) and s5 == pytest.approx(qsize)
    with pytest.raises(ValueError, match="landmarks"):
        ffhq_quad(np.zeros((10, 2)))


def test_ffhq_align_pads_when_the_face_touches_the_border():
    lm = _face_landmarks68(60.0, 60.0, 50.0)
    out = ffhq_align(_smooth_image(150, 150), lm, size=64)
    assert out.shape == (64, 64, 3)


def test_landmark_box_crop_geometry_and_tensor_version():
    lm = _face_landmarks68(210.0, 200.0, 50.0)
    img = _smooth_image(420, 440)
    out = landmark_box_crop(img, lm, size=64)
    assert out.shape == (64, 64, 3)
    # Square: centre of the landmark box raised by side//6, half-width = the longer box side.
    side = int(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])))
    cx, cy = np.round((lm.min(0) + lm.max(0)) / 2).astype(int)
    assert landmark_box(lm) == (cx - side, cy - side // 6 - side, cx + side, cy - side // 6 + side)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    out_t = landmark_box_crop_tensor(t, torch.from_numpy(lm)[None], size=64)[0].permute(1, 2, 0).numpy()
    assert np.abs(out_t - out.astype(float)).mean() < 4.0
    # Near the border the numpy crop pads and still returns the full square.
    edge = landmark_box_crop(img, _face_landmarks68(30.0, 30.0, 40.0), size=32)
    assert edge.shape == (32, 32, 3)


def test_optional_68_point_backend():
    if has_face_alignment():
        pytest.skip("face_alignment installed; the missing-package error is not reachable")
    with pytest.raises(ImportError, match="face_alignment"):
        LandmarkDetector68()


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Similarity src -> dst by linear least squares over (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_hyperreenact_convention_matches_csim_affine_grid():
    """HyperReenact's csim.py: skimage similarity template -> keypoints, its normalisation to affine_grid."""
    from common.face.align import HYPERREENACT_TEMPLATE_112

    torch.manual_seed(0)
    img = torch.rand(2, 3, 256, 256, dtype=torch.float64)
    lm5 = torch.tensor(
        [
            [[95.0, 118], [160, 115], [128, 150], [102, 186], [155, 184]],
            [[90.0, 120], [165, 125], [130, 160], [100, 190], [150, 195]],
        ],
        dtype=torch.float64,
    )
    thetas = []
    for pts in lm5.numpy():
        t = _lstsq_similarity(HYPERREENACT_TEMPLATE_112.double().numpy(), pts)
        h = w = 256
        g = 112
        th = t.copy()
        th[0, 0], th[0, 1] = t[0, 0] * g / w, t[0, 1] * g / w
        th[0, 2] = t[0, 2] * 2 / w + th[0, 1] + th[0, 0] - 1
        th[1, 0], th[1, 1] = t[1, 0] * g / h, t[1, 1] * g / h
        th[1, 2] = t[1, 2] * 2 / h + th[1, 0] + th[1, 1] - 1
        thetas.append(th)
    theta = torch.from_numpy(np.stack(thetas))
    grid = torch.nn.functional.affine_grid(theta, [2, 3, 112, 112], align_corners=False)
    ref = torch.nn.functional.grid_sample(img, grid, align_corners=False)
    ours = arcface_align(img, lm5, template="hyperreenact")
    assert torch.allclose(ours, ref, atol=1e-9)
    # The ArcFace (TreB1eN) convention is a different, half-pixel-shifted crop.
    assert not torch.allclose(arcface_align(img, lm5, template="hyperreenact", convention="arcface"), ref, atol=1e-3)


def test_deca_crop_kornia_compat_matches_kornia_04_sampling():
    """kornia 0.4.x warp_affine: normalise M with (W-1) pixel matrices, invert, affine_grid + grid_sample
    (align_corners=False), written out here from its source."""
    torch.manual_seed(0)
    img = torch.rand(2, 3, 90, 120, dtype=torch.float64)
    lm = torch.tensor([[[30.0, 20.0], [80.0, 25.0], [55.0, 75.0]], [[20.0, 30.0], [70.0, 28.0], [50.0, 80.0]]]).double()
    size = 48
    m = deca_crop_matrix(landmarks=lm, size=size)
    full = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]]).double().expand(2, 1, 3)], 1)

    def norm(h, w):
        return torch.tensor([[2.0 / (w - 1), 0, -1], [0, 2.0 / (h - 1), -1], [0, 0, 1]]).double()

    dst_norm_src_norm = norm(size, size) @ full @ torch.linalg.inv(norm(90, 120))
    src_norm_dst_norm = torch.linalg.inv(dst_norm_src_norm)
    grid = torch.nn.functional.affine_grid(src_norm_dst_norm[:, :2], [2, 3, size, size], align_corners=False)
    ref = torch.nn.functional.grid_sample(img, grid, align_corners=False)
    # affine_grid builds its base grid at single precision: agreement to ~1e-6 px, not 1e-12.
    assert torch.allclose(deca_crop(img, landmarks=lm, size=size, kornia_compat=True), ref, atol=5e-5)
    assert (deca_crop(img, landmarks=lm, size=size) - ref).abs().max() > 1e-3  # the two conventions differ
