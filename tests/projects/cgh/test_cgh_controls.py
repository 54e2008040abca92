"""The demo's controls (projects/cgh/controls.py): SimCLR's NT-Xent by hand, and a short control run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from projects.cgh.controls import ControlEncoder, nt_xent, train_control


def test_nt_xent_against_a_hand_computation():
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1)
    t = 0.5
    z = torch.cat([z1, z2]).tolist()
    total = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        sims = {j: sum(a * b for a, b in zip(z[i], z[j], strict=True)) / t for j in range(6) if j != i}
        total += -(sims[pos] - math.log(sum(math.exp(v) for v in sims.values())))
    assert nt_xent(z1, z2, t).item() == pytest.approx(total / 6, rel=1e-5)
    # identical views far from the others: the loss falls towards 0 as the temperature falls
    e = torch.eye(3, 4)
    assert nt_xent(e, e, 0.01).item() < 1e-6
    with pytest.raises(ValueError, match="nt_xent"):
        nt_xent(z1, z2[:2], t)


def test_control_encoder_outputs():
    x = torch.randn(4, 3, 32, 32)
    sim = ControlEncoder("simclr", "resnet18", False, 3, 8, 10)
    sim.eval()
    z = sim(x)
    assert z.shape == (4, 64) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)
    f = sim.knn_features(x)
    assert f.shape == (4, sim.backbone.out_dim) and torch.allclose(f.norm(dim=1), torch.ones(4), atol=1e-5)
    assert ControlEncoder("supervised", "resnet18", False, 3, 8, 10)(x).shape == (4, 10)
    with pytest.raises(ValueError, match="kind"):
        ControlEncoder("byol", "resnet18", False, 3, 8, 10)


@pytest.mark.parametrize("kind", ["simclr", "supervised"])
def test_short_control_run_is_evaluated_like_the_demo(kind):
    torch.set_num_threads(1)
    # the budget: epochs x (n_train // batch 64) steps (the demo's drop_last loader), or max_steps across epochs
    if kind == "simclr":
        r = train_control(kind, seed=0, dataset="shapes_many", epochs=1, n_train=150)
        assert r["steps"] == 2 and [e for e, _ in r["curve"]] == [1]  # one kNN point per epoch
    else:
        r = train_control(kind, seed=0, dataset="shapes_many", max_steps=3, n_train=128)
        assert r["steps"] == 3 and r["curve"] == []
    assert r["name"].endswith("(control)") and r["seed"] == 0
    assert 0.0 <= r["knn"] <= 1.0 and 0.0 <= r["linear"] <= 1.0 and math.isfinite(r["loss"])
    with pytest.raises(ValueError, match="procedural"):
        train_control(kind, seed=0, dataset="cifar10", max_steps=1)
