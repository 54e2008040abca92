"""StyleMask losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from projects.stylemask.loss import (
    EYE_PAIRS,
    MOUTH_PAIRS,
    eye_loss,
    identity_loss,
    lpips_term,
    mouth_loss,
    orthographic_deca,
    reenactment_loss,
    shape_terms,
    vertex_loss,
)


def test_vertex_loss_by_hand():
    gt = torch.zeros(2, 4, 3)
    r = torch.zeros(2, 4, 3)
    r[0, 1, 2] = 3.0
    r[1, 3, 0] = -1.5
    assert vertex_loss(gt, r).item() == pytest.approx(4.5 / 24)
    with pytest.raises(ValueError, match="shapes differ"):
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


def test_eye_and_mouth_losses_on_hand_made_landmarks():
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


def test_identity_loss_by_hand():
    e_s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e_r = torch.tensor([[1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    assert identity_loss(e_r, e_s).item() == pytest.approx((0.0 + 1 - math.sqrt(0.5)) / 2)


def test_orthographic_deca_projection():
    pts = torch.tensor([[[0.1, 0.2, 0.3]]])
    cam = torch.tensor([[8.0, 0.05, -0.1]])
    out = orthographic_deca(pts, cam, image_size=224)
    x, y, z = 8 * 0.15, 8 * 0.1, 8 * 0.3
    assert torch.allclose(out, torch.tensor([[[x * 112 + 112, -y * 112 + 112, -z * 112 + 112]]]))


def _linear_flame(n_shape=3, n_exp=2, v=70):
    torch.manual_seed(0)
    bs, be, bp = torch.randn(n_shape, v, 3), torch.randn(n_exp, v, 3), torch.randn(6, v, 3)

    def flame(shape, exp, pose):
        verts = torch.einsum("bs,svc->bvc", shape, bs) + torch.einsum("be,evc->bvc", exp, be)
        verts = verts + torch.einsum("bp,pvc->bvc", pose, bp)
        return verts, verts[:, :68]

    return flame


def test_shape_terms_and_reenactment_loss():
    flame = _linear_flame()
    src = {"shape": torch.randn(2, 3), "exp": torch.randn(2, 2), "pose": torch.randn(2, 6)}
    tgt = {"shape": torch.randn(2, 3), "exp": torch.randn(2, 2), "pose": torch.randn(2, 6)}
    perfect = {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"]}
    t = shape_terms(flame, {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"]}, perfect)
    assert all(v.item() == 0.0 for v in t.values())
    # vertex term by hand: fixed camera [8,0,0] scales x by 8*112, y and z by -8*112
    off = {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"].clone()}
    off["pose"][:, 0] += 0.01
    t = shape_terms(flame, {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"]}, off)
    v_gt, _ = flame(src["shape"], tgt["exp"], tgt["pose"])
    v_r, _ = flame(off["shape"], off["exp"], off["pose"])
    assert t["shape"].item() == pytest.approx(((v_gt - v_r).abs() * 8 * 112).mean().item(), rel=1e-4)
    e = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    total, terms = reenactment_loss(flame, src, tgt, off, e, e, lambda_shape=1.0, lambda_identity=10.0)
    assert terms["identity"].item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-5)
    assert set(terms) == {"shape", "eye", "mouth", "identity"}


def test_lpips_term_rejects_0_255_inputs():
    def fn(a, b):
        return (a - b).abs().flatten(1).mean(1)

    a, b = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8) * 0.5
    assert lpips_term(fn, a, b).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        lpips_term(fn, a * 255, b * 255 + 3)
