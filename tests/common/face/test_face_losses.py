"""StyleMask/HyperReenact 3D and identity loss terms against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from common.face.losses import (
    EYE_PAIRS,
    FIXED_CAM,
    MOUTH_PAIRS,
    eye_loss,
    flame_shape_terms,
    identity_loss,
    landmark_pair_loss,
    mouth_loss,
    vertex_loss,
)


def test_constants():
    assert len(EYE_PAIRS) == 6 and len(MOUTH_PAIRS) == 10
    assert FIXED_CAM == (8.0, 0.0, 0.0)
    # every index a point of the 68-point layout, eyes 36-47, mouth 48-67, no pair repeated
    assert all(36 <= i <= 47 for p in EYE_PAIRS for i in p) and len(set(EYE_PAIRS)) == 6
    assert all(48 <= i <= 67 for p in MOUTH_PAIRS for i in p) and len(set(MOUTH_PAIRS)) == 10


def test_vertex_loss_by_hand():
    gt = torch.zeros(2, 4, 3)
    r = torch.zeros(2, 4, 3)
    r[0, 1, 2] = 3.0
    r[1, 3, 0] = -1.5
    assert vertex_loss(gt, r).item() == pytest.approx(4.5 / 24)
    out = torch.tensor([[[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]]])
    assert vertex_loss(torch.zeros(1, 2, 3), out).item() == pytest.approx(6 / 6)
    with pytest.raises(ValueError, match="vertex_loss: shapes differ"):
        vertex_loss(gt, r[:, :3])


def _face(eye_open: float, mouth_open: float) -> torch.Tensor:
    """68 2-D landmarks: all at the origin except eyelids and lips, opened vertically by the given amounts."""
    lm = torch.zeros(68, 2)
    for a, b in EYE_PAIRS:
        lm[a] = torch.tensor([float(a), 0.0])
        lm[b] = torch.tensor([float(a), eye_open])
    for a, b in MOUTH_PAIRS:
        lm[a] = torch.tensor([float(a), 0.0])
        lm[b] = torch.tensor([float(a), mouth_open])
    return lm


def test_eye_and_mouth_losses_on_hand_made_faces():
    gt = _face(eye_open=2.0, mouth_open=5.0)[None]
    r = _face(eye_open=1.0, mouth_open=5.0)[None]
    # each eye pair: |dy_gt - dy_r| = 1 on y, 0 on x -> mean over (B=1, D=2) = 0.5; same for all 6 pairs
    assert eye_loss(gt, r).item() == pytest.approx(0.5)
    assert mouth_loss(gt, r).item() == pytest.approx(0.0)
    r2 = _face(eye_open=2.0, mouth_open=1.0)[None]
    assert eye_loss(gt, r2).item() == pytest.approx(0.0)
    assert mouth_loss(gt, r2).item() == pytest.approx(2.0)  # |5 - 1| / 2 axes
    # distances are per-axis absolute values: flipping the sign of an opening changes nothing
    r3 = _face(eye_open=-2.0, mouth_open=-5.0)[None]
    assert eye_loss(gt, r3).item() == pytest.approx(0.0)
    assert mouth_loss(gt, r3).item() == pytest.approx(0.0)
    # one pair only differing: the mean is over the pairs
    r4 = gt.clone()
    r4[0, 41, 1] += 6.0  # pair (37, 41): dy 2 -> 8
    assert eye_loss(gt, r4).item() == pytest.approx(6.0 / 2 / 6)


def test_eye_and_mouth_losses_by_hand_on_a_batch():
    gt = torch.zeros(2, 68, 2)
    out = torch.zeros(2, 68, 2)
    # open pair (37, 41) vertically by 3 in sample 0 only: |d_gt - d| = 3 on one coordinate
    out[0, 41, 1] = 3.0
    assert eye_loss(gt, out).item() == pytest.approx(3.0 / (6 * 2 * 2))  # 6 pairs x 2 samples x 2 coords
    assert mouth_loss(gt, out).item() == 0.0
    out[0, 41, 1] = -3.0
    assert eye_loss(gt, out).item() == pytest.approx(3.0 / 24)
    # mouth corners (48, 54) 4 apart in x in the ground truth, 1 apart in the output, both samples
    gt[:, 54, 0] = 4.0
    out2 = torch.zeros(2, 68, 2)
    out2[:, 54, 0] = 1.0
    assert mouth_loss(gt, out2).item() == pytest.approx(3.0 * 2 / (10 * 2 * 2))
    # any pair list; 3-D landmarks average over 3 axes
    lm_gt, lm = torch.zeros(1, 68, 3), torch.zeros(1, 68, 3)
    lm[0, 1] = torch.tensor([1.0, 2.0, -3.0])
    assert landmark_pair_loss(lm_gt, lm, [(0, 1), (2, 3)]).item() == pytest.approx(6.0 / (2 * 3))
    with pytest.raises(ValueError, match="landmark_pair_loss: shapes differ"):
        eye_loss(gt, out[:1])


def test_identity_loss_by_hand():
    e_s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e_r = torch.tensor([[1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    assert identity_loss(e_r, e_s).item() == pytest.approx((0.0 + 1 - math.sqrt(0.5)) / 2)
    # raw (unnormalised) features: a cosine, not a dot product
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    assert identity_loss(a, b).item() == pytest.approx(0.5)  # cos 0 and 1
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert identity_loss(a, c).item() == pytest.approx((0 + (1 - 1 / math.sqrt(2))) / 2)
    with pytest.raises(ValueError, match="identity_loss: shapes differ"):
        identity_loss(a, c[:1])


def test_identity_loss_is_the_official_dot_product_on_unit_embeddings():
    """ArcFace ends with an L2 normalisation; on its outputs ``1 - cos`` equals the official ``1 - <a, b>``,
    value and gradient (the extra normalisation's Jacobian is a projection the first one already applied)."""
    torch.manual_seed(0)
    raw = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    ref = F.normalize(torch.randn(5, 16, dtype=torch.float64), dim=1)
    ours = identity_loss(F.normalize(raw, dim=1), ref)
    (g_ours,) = torch.autograd.grad(ours, raw)
    official = (1.0 - (F.normalize(raw, dim=1) * ref).sum(dim=1)).mean()
    (g_official,) = torch.autograd.grad(official, raw)
    assert ours.item() == pytest.approx(official.item(), abs=1e-12)
    assert torch.allclose(g_ours, g_official, atol=1e-12)


def _linear_flame(n_shape=3, n_exp=2, v=70):
    torch.manual_seed(0)
    bs, be, bp = torch.randn(n_shape, v, 3), torch.randn(n_exp, v, 3), torch.randn(6, v, 3)

    def flame(shape, exp, pose):
        verts = torch.einsum("bs,svc->bvc", shape, bs) + torch.einsum("be,evc->bvc", exp, be)
        verts = verts + torch.einsum("bp,pvc->bvc", pose, bp)
        return verts, verts[:, :68]

    return flame


def test_flame_shape_terms_compare_projected_vertices():
    flame = _linear_flame()
    gt = {"shape": torch.randn(2, 3), "exp": torch.randn(2, 2), "pose": torch.randn(2, 6)}
    assert all(v.item() == 0.0 for v in flame_shape_terms(flame, gt, dict(gt)).values())
    off = {**gt, "pose": gt["pose"].clone()}
    off["pose"][:, 0] += 0.01
    t = flame_shape_terms(flame, gt, off)
    v_gt, _ = flame(gt["shape"], gt["exp"], gt["pose"])
    v_r, _ = flame(off["shape"], off["exp"], off["pose"])
    # fixed camera [8, 0, 0] then DECA's pixel mapping of the 224 crop: every coordinate scales by 8 * 112
    assert t["shape"].item() == pytest.approx(((v_gt - v_r).abs() * 8 * 112).mean().item(), rel=1e-4)
    l_gt, l_r = v_gt[:, :68, :2] * 8 * 112, v_r[:, :68, :2] * 8 * 112
    d = lambda lm, i, j: (lm[:, i] - lm[:, j]).abs()  # noqa: E731
    eye = torch.stack([(d(l_gt, i, j) - d(l_r, i, j)).abs().mean() for i, j in EYE_PAIRS]).mean()
    assert t["eye"].item() == pytest.approx(eye.item(), rel=1e-4)
