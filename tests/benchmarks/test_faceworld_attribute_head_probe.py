"""The attribute-head probe benchmark's probes (``mlp_head``, the expert's own head builder) and its R²
bookkeeping, on data with a known answer."""

import pytest
import torch

from benchmarks.faceworld_attribute_head_probe import fit_probe
from common.face.faceworld_experts import mlp_head


def test_mlp_head_layout():
    lin = mlp_head(12, hidden=16, depth=0, out_dim=3)
    assert [type(m).__name__ for m in lin] == ["Flatten", "Linear"]
    mlp = mlp_head(12, hidden=16, depth=2, out_dim=3)
    assert [tuple(m.weight.shape) for m in mlp if isinstance(m, torch.nn.Linear)] == [(16, 12), (16, 16), (3, 16)]
    assert mlp(torch.rand(5, 3, 2, 2)).shape == (5, 3)


def test_a_linear_probe_recovers_a_linear_target_and_not_noise():
    """y = x W (exactly linear in the maps): a linear probe reaches R² near 1 held out; a target of pure noise,
    independent of the maps, ends near 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2560, 4, 2, 2, generator=g).half()
    w = torch.randn(16, 3, generator=g)
    y = x.float().flatten(1) @ w
    tx = torch.randn(500, 4, 2, 2, generator=g).half()
    ty = tx.float().flatten(1) @ w
    torch.manual_seed(0)
    good = fit_probe(mlp_head(16, hidden=1, depth=0, out_dim=3), x, y, tx, ty, epochs=20, lr=3e-2)
    assert good[-1]["test_r2"] > 0.99
    assert good[0]["test_r2"] < good[-1]["test_r2"]
    noise = fit_probe(
        mlp_head(16, hidden=1, depth=0, out_dim=3),
        x,
        torch.randn(2560, 3, generator=g),
        tx,
        torch.randn(500, 3),
        epochs=20,
        lr=3e-2,
    )
    assert -0.1 < noise[-1]["test_r2"] < 0.05
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit_probe(mlp_head(16, hidden=1, depth=0, out_dim=3), x[:10], y[:10], tx, ty, epochs=1)
