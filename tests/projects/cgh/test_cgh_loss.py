"""CGH loss functions against independent computations written out here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from projects.cgh.loss import (
    combine_with_warmup,
    info_nce,
    relation_ce,
    relational_loss,
    warmup_alpha,
)

TAU_S = {"g": 0.1, "h": 0.08}
TAU_T = {"g": 0.04, "h": 0.08}


def _unit(*shape):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)


def _ressl_by_loops(z_s, z_t, queue, tau_s, tau_t):
    """ReSSL loss written element by element: -1/B sum_i sum_k p_t[i,k] log p_s[i,k]."""
    b, k = z_s.shape[0], queue.shape[0]
    total = 0.0
    for i in range(b):
        sims_s = [float(z_s[i] @ queue[j]) for j in range(k)]
        sims_t = [float(z_t[i] @ queue[j]) for j in range(k)]
        zs = sum(math.exp(s / tau_s) for s in sims_s)
        zt = sum(math.exp(s / tau_t) for s in sims_t)
        for j in range(k):
            p_t = math.exp(sims_t[j] / tau_t) / zt
            total -= p_t * math.log(math.exp(sims_s[j] / tau_s) / zs)
    return total / b


def test_relation_ce_matches_loops():
    torch.manual_seed(0)
    z_s, z_t, q = _unit(3, 5), _unit(3, 5), _unit(7, 5)
    target = F.softmax(z_t @ q.T / 0.04, dim=1)
    got = relation_ce(z_s @ q.T, target, 0.1)
    assert got.item() == pytest.approx(_ressl_by_loops(z_s, z_t, q, 0.1, 0.04), rel=1e-10)


def test_identical_contexts_reduce_to_ressl():
    torch.manual_seed(1)
    z_s, z_t, q = _unit(4, 6), _unit(4, 6), _unit(9, 6)
    tau = {"g": 0.1, "h": 0.1}
    tau_t = {"g": 0.04, "h": 0.04}
    s = {"g": z_s @ q.T, "h": z_s @ q.T}
    t = {"g": z_t @ q.T, "h": z_t @ q.T}
    cgh, parts = relational_loss(s, t, {"g2h": 0.5, "h2g": 0.5}, tau, tau_t)
    expected = _ressl_by_loops(z_s, z_t, q, 0.1, 0.04)
    assert cgh.item() == pytest.approx(expected, rel=1e-10)
    assert parts["g2h"].item() == pytest.approx(expected, rel=1e-10)
    ressl, _ = relational_loss(s, t, {"g2g": 1.0}, tau, tau_t)
    assert ressl.item() == pytest.approx(expected, rel=1e-10)


def test_cross_terms_use_the_right_contexts_and_temperatures():
    torch.manual_seed(2)
    zg_s, zg_t, zh_s, zh_t = _unit(3, 4), _unit(3, 4), _unit(3, 6), _unit(3, 6)
    qg, qh = _unit(8, 4), _unit(8, 6)
    s = {"g": zg_s @ qg.T, "h": zh_s @ qh.T}
    t = {"g": zg_t @ qg.T, "h": zh_t @ qh.T}
    loss, parts = relational_loss(s, t, {"g2h": 0.5, "h2g": 0.5}, TAU_S, TAU_T)
    # g2h: target from the global teacher at 0.04, student hypercolumn relations at 0.08
    p = torch.exp(t["g"] / 0.04) / torch.exp(t["g"] / 0.04).sum(1, keepdim=True)
    g2h = -(p * torch.log(torch.exp(s["h"] / 0.08) / torch.exp(s["h"] / 0.08).sum(1, keepdim=True))).sum(1).mean()
    p = torch.exp(t["h"] / 0.08) / torch.exp(t["h"] / 0.08).sum(1, keepdim=True)
    h2g = -(p * torch.log(torch.exp(s["g"] / 0.1) / torch.exp(s["g"] / 0.1).sum(1, keepdim=True))).sum(1).mean()
    assert parts["g2h"].item() == pytest.approx(g2h.item(), rel=1e-10)
    assert parts["h2g"].item() == pytest.approx(h2g.item(), rel=1e-10)
    assert loss.item() == pytest.approx(0.5 * g2h.item() + 0.5 * h2g.item(), rel=1e-10)


def test_multicrop_averages_into_global_student_terms():
    torch.manual_seed(3)
    s = {"g": torch.randn(2, 5, dtype=torch.float64), "h": torch.randn(2, 5, dtype=torch.float64)}
    t = {"g": torch.randn(2, 5, dtype=torch.float64), "h": torch.randn(2, 5, dtype=torch.float64)}
    loc = [torch.randn(2, 5, dtype=torch.float64) for _ in range(2)]
    _, parts = relational_loss(s, t, {"g2h": 0.5, "h2g": 0.5}, TAU_S, TAU_T, loc)
    target = F.softmax(t["h"] / 0.08, dim=1)
    vals = [relation_ce(x, target, 0.1) for x in (s["g"], *loc)]
    assert parts["h2g"].item() == pytest.approx(sum(v.item() for v in vals) / 3, rel=1e-12)
    _, plain = relational_loss(s, t, {"g2h": 1.0}, TAU_S, TAU_T, loc)  # hypercolumn student: no locals
    assert plain["g2h"].item() == pytest.approx(relation_ce(s["h"], F.softmax(t["g"] / 0.04, 1), 0.08).item())


def test_teacher_logits_get_no_gradient():
    s = {"g": torch.randn(2, 5, requires_grad=True)}
    t = {"g": torch.randn(2, 5, requires_grad=True)}
    loss, _ = relational_loss(s, t, {"g2g": 1.0}, TAU_S, TAU_T)
    loss.backward()
    assert s["g"].grad is not None and s["g"].grad.abs().sum() > 0
    assert t["g"].grad is None


def test_info_nce_against_formula():
    torch.manual_seed(4)
    z_s, z_t, q = _unit(3, 4), _unit(3, 4), _unit(6, 4)
    got = info_nce(z_s, z_t, q, 0.2)
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(z_s[i] @ z_t[i]) / 0.2)
        neg = sum(math.exp(float(z_s[i] @ q[j]) / 0.2) for j in range(6))
        expected -= math.log(pos / (pos + neg))
    assert got.item() == pytest.approx(expected / 3, rel=1e-10)


def test_warmup_ramp_and_combination():
    assert warmup_alpha(0, 10) == 0.0
    assert warmup_alpha(5, 10) == 0.5
    assert warmup_alpha(10, 10) == 1.0
    assert warmup_alpha(25, 10) == 1.0
    assert warmup_alpha(3, 0) == 1.0
    rel, n1, n2 = torch.tensor(2.0), torch.tensor(3.0), torch.tensor(5.0)
    assert combine_with_warmup(rel, [n1, n2], 0.25).item() == pytest.approx(0.75 * 8.0 + 0.25 * 2.0)
    assert combine_with_warmup(rel, [n1, n2], 1.0).item() == 2.0


def test_bad_terms_fail_clearly():
    s = {"g": torch.randn(2, 5)}
    with pytest.raises(ValueError, match="unknown loss term"):
        relational_loss(s, s, {"x2y": 1.0}, TAU_S, TAU_T)
    with pytest.raises(ValueError, match="needs 'h' logits"):
        relational_loss(s, s, {"g2h": 1.0}, TAU_S, TAU_T)
