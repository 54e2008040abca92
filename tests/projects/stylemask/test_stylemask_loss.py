"""StyleMask loss composition against values computed by hand (the terms: tests/common/face/test_face_losses.py)."""

from __future__ import annotations

import pytest
import torch

from common.face.losses import flame_shape_terms
from projects.stylemask.loss import lpips_term, reenactment_loss


def _linear_flame(n_shape=3, n_exp=2, v=70):
    torch.manual_seed(0)
    bs, be, bp = torch.randn(n_shape, v, 3), torch.randn(n_exp, v, 3), torch.randn(6, v, 3)

    def flame(shape, exp, pose):
        verts = torch.einsum("bs,svc->bvc", shape, bs) + torch.einsum("be,evc->bvc", exp, be)
        verts = verts + torch.einsum("bp,pvc->bvc", pose, bp)
        return verts, verts[:, :68]

    return flame


def test_reenactment_loss_composition():
    flame = _linear_flame()
    src = {"shape": torch.randn(2, 3), "exp": torch.randn(2, 2), "pose": torch.randn(2, 6)}
    tgt = {"shape": torch.randn(2, 3), "exp": torch.randn(2, 2), "pose": torch.randn(2, 6)}
    off = {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"].clone()}
    off["pose"][:, 0] += 0.01
    e = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    total, terms = reenactment_loss(flame, src, tgt, off, e, e, lambda_shape=1.0, lambda_identity=10.0)
    gt = {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"]}
    assert {k: terms[k].item() for k in ("shape", "eye", "mouth")} == {
        k: v.item() for k, v in flame_shape_terms(flame, gt, off).items()
    }
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
