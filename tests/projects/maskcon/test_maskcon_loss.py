"""MaskCon losses against an explicit per-sample loop written here (independent of projects/maskcon/loss.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from projects.maskcon import loss as L


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _loop_loss(q, k, queue, y, qy, t1, t2, w, mode="maskcon", class_logits=None):
    """The loss of §1-2 of the spec, one sample and one queue row at a time, in float64 Python arithmetic."""
    B, K = q.shape[0], queue.shape[0]
    total = 0.0
    for i in range(B):
        logits = [float(q[i] @ k[i]) / t1] + [float(q[i] @ queue[j]) / t1 for j in range(K)]
        mx = max(logits)
        lse = mx + math.log(sum(math.exp(v - mx) for v in logits))
        logp = [v - lse for v in logits]
        same = [j for j in range(K) if int(qy[j]) == int(y[i]) and int(qy[j]) >= 0]
        if mode == "maskcon":
            z = [1.0] + [0.0] * K
            if same:
                s = {j: float(k[i] @ queue[j]) / t2 for j in same}
                smax = max(s.values())
                for j in same:
                    z[j + 1] = math.exp(s[j] - smax)
            tot = sum(z)
            target = [w * v / tot for v in z]
            target[0] += 1 - w
        elif mode in ("supcon", "grafit"):
            ww = 1.0 if mode == "supcon" else w
            n = 1 + len(same)
            target = [ww / n] + [ww / n if j in same else 0.0 for j in range(K)]
            target[0] += 1 - ww
        elif mode == "selfcon":
            target = [1.0] + [0.0] * K
        elif mode == "coins":
            cl = class_logits[i].tolist()
            cmx = max(cl)
            clse = cmx + math.log(sum(math.exp(v - cmx) for v in cl))
            total += w * -(cl[int(y[i])] - clse) + (1 - w) * -logp[0]
            continue
        total += -sum(t * lp for t, lp in zip(target, logp))
    return total / B


def _case(B=5, K=12, D=8, C=3, seed=0):
    q, k, queue = _unit(B, D, seed=seed), _unit(B, D, seed=seed + 1), _unit(K, D, seed=seed + 2)
    g = torch.Generator().manual_seed(seed + 3)
    y = torch.randint(0, C, (B,), generator=g)
    qy = torch.randint(0, C, (K,), generator=g)
    return q, k, queue, y, qy


@pytest.mark.parametrize("w", [0.0, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("t2", [0.05, 0.1, 1.0])
def test_maskcon_matches_loop(w, t2):
    q, k, queue, y, qy = _case()
    got = L.maskcon_loss(q, k, queue, y, qy, t1=0.1, t2=t2, w=w)
    assert got.item() == pytest.approx(_loop_loss(q, k, queue, y, qy, 0.1, t2, w), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("mode", ["selfcon", "supcon", "grafit", "coins"])
def test_baselines_match_loop(mode):
    q, k, queue, y, qy = _case(seed=7)
    cl = torch.randn(q.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = L.contrastive_loss(mode, q, k, queue, y, qy, t1=0.2, t2=0.05, w=0.3, class_logits=cl)
    want = _loop_loss(q, k, queue, y, qy, 0.2, 0.05, 0.3, mode=mode, class_logits=cl)
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_w0_is_moco():
    q, k, queue, y, qy = _case(seed=3)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.1
    moco = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    assert L.maskcon_loss(q, k, queue, y, qy, t1=0.1, t2=0.05, w=0.0).item() == pytest.approx(moco.item(), rel=1e-12)
    assert L.selfcon_loss(q, k, queue, 0.1).item() == pytest.approx(moco.item(), rel=1e-12)


def test_large_t2_w1_is_supcon_on_coarse():
    q, k, queue, y, qy = _case(seed=4)
    mc = L.maskcon_loss(q, k, queue, y, qy, t1=0.1, t2=1e9, w=1.0)
    sup = _loop_loss(q, k, queue, y, qy, 0.1, None, 1.0, mode="supcon")
    assert mc.item() == pytest.approx(sup, rel=1e-7)
    assert L.supcon_loss(q, k, queue, y, qy, 0.1).item() == pytest.approx(sup, rel=1e-10)


def test_coarse_equal_fine_labels():
    """With coarse = fine labels the target puts mass only on own key and same-fine queue rows."""
    q, k, queue, _, _ = _case(B=6, K=20, seed=5)
    fine = torch.tensor([0, 1, 2, 3, 4, 5])
    qfine = torch.arange(20) % 7
    t = L.maskcon_soft_targets(k, queue, fine, qfine, 0.05)
    for i in range(6):
        off = [j for j in range(20) if int(qfine[j]) != int(fine[i])]
        assert torch.all(t[i, 1:][off] == 0)
        same = [j for j in range(20) if int(qfine[j]) == int(fine[i])]
        # the nearest same-label row weighs as much as the own key
        assert t[i, 1:][same].max().item() == pytest.approx(t[i, 0].item(), rel=1e-12)
    got = L.maskcon_loss(q, k, queue, fine, qfine, 0.1, 0.05, 0.5)
    assert got.item() == pytest.approx(_loop_loss(q, k, queue, fine, qfine, 0.1, 0.05, 0.5), rel=1e-10)


def test_empty_row_and_tiny_t2_no_nan():
    q, k, queue, _, _ = _case(B=3, K=10, seed=6)
    y = torch.tensor([0, 1, 2])
    qy = torch.tensor([0] * 5 + [1] * 5)  # no queue row of coarse class 2; empty rows (label -1) never match
    qy[9] = -1
    t = L.maskcon_soft_targets(k, queue, y, qy, 0.05)
    assert torch.equal(t[2], L.instance_targets(1, 10, dtype=t.dtype)[0])
    for t2 in (1e-3, 1e-6, 1e-12):
        # make all same-coarse similarities negative: the official code divides 0/0 here
        tq = L.maskcon_soft_targets(-queue[:3], queue, y, qy, t2)
        assert torch.isfinite(tq).all()
        assert torch.allclose(tq.sum(1), torch.ones(3, dtype=tq.dtype))
        lo = L.maskcon_loss(q, k, queue, y, qy, 0.1, t2, 1.0)
        assert torch.isfinite(lo)
    want = _loop_loss(q, k, queue, y, qy, 0.1, 0.05, 0.5)
    assert L.maskcon_loss(q, k, queue, y, qy, 0.1, 0.05, 0.5).item() == pytest.approx(want, rel=1e-10)


def test_tiny_t2_is_half_self_half_nearest():
    q, k, queue, y, qy = _case(seed=8)
    t = L.maskcon_soft_targets(k, queue, y, qy, 1e-6)
    for i in range(len(y)):
        same = [j for j in range(len(qy)) if qy[j] == y[i]]
        if not same:
            continue
        nearest = max(same, key=lambda j: float(k[i] @ queue[j]))
        assert t[i, 0].item() == pytest.approx(0.5) and t[i, nearest + 1].item() == pytest.approx(0.5)


def test_gradient_flows_only_through_q():
    q, k, queue, y, qy = _case(seed=9)
    q = q.clone().requires_grad_(True)
    k = k.clone().requires_grad_(True)
    L.maskcon_loss(q, k, queue, y, qy).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_unknown_mode():
    q, k, queue, y, qy = _case()
    with pytest.raises(ValueError, match="unknown MaskCon mode"):
        L.contrastive_loss("simclr", q, k, queue, y, qy)
    with pytest.raises(ValueError, match="class_logits"):
        L.contrastive_loss("coins", q, k, queue, y, qy)
