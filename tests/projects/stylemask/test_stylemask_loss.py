"""StyleMask loss composition against values computed by hand (the terms: tests/common/face/test_face_losses.py)."""

from __future__ import annotations

import pytest
import torch

from projects.stylemask.loss import lpips_term, reenactment_loss, shape_terms


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
