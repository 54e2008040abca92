"""Collapse statistics against hand computations, on constructed collapsed and spread representations."""

from __future__ import annotations

import math

import pytest
import torch

from common.metrics.collapse import (
    collapse_stats,
    effective_rank,
    mean_pairwise_cosine,
    normalized_std,
    relation_entropy,
)


def test_effective_rank_by_hand():
    # centred rows (+-a e1, +-b e2): singular values sqrt(2) a and sqrt(2) b -> p = (a, b) / (a + b)
    a, b = 3.0, 1.0
    x = torch.tensor([[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]])
    p = torch.tensor([a, b]) / (a + b)
    assert effective_rank(x) == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-6)
    # equal singular values: the full rank
    assert effective_rank(torch.eye(5) * 2 - 2 / 5, center=False) == pytest.approx(4.0, rel=1e-5)


def test_collapsed_representations_are_flagged():
    torch.manual_seed(0)
    spread = torch.randn(512, 32)
    same = torch.randn(1, 32).expand(512, 32).clone()  # complete collapse: one vector
    line = torch.randn(512, 1) * torch.randn(1, 32) + torch.randn(1, 32)  # dimensional collapse to one direction
    cone = torch.randn(512, 32) * 0.05 + torch.randn(1, 32)  # all near one direction (a narrow cone)
    s, c, ln, cn = (collapse_stats(v) for v in (spread, same, line, cone))
    assert s["erank"] > 25 and s["erank_frac"] > 0.8  # i.i.d. Gaussian: close to full rank
    assert abs(s["mean_cos"]) < 0.02 and s["std"] > 0.95
    assert c["erank"] == 1.0 and c["mean_cos"] == pytest.approx(1.0, abs=1e-6) and c["std"] < 1e-3
    assert ln["erank"] == pytest.approx(1.0, abs=1e-3)
    assert cn["mean_cos"] > 0.95 and cn["std"] < 0.3  # high rank after centring, but every row alike


def test_mean_pairwise_cosine_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    u = torch.nn.functional.normalize(z, dim=1)
    pairs = [(u[i] @ u[j]).item() for i in range(3) for j in range(3) if i != j]
    assert mean_pairwise_cosine(z) == pytest.approx(sum(pairs) / len(pairs), rel=1e-6)


def test_normalized_std_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # unit rows; each column (1, 0) has std 1/sqrt(2)
    assert normalized_std(z) == pytest.approx(math.sqrt(2) / math.sqrt(2), rel=1e-6)


def test_relation_entropy_uniform_and_onehot():
    k = 64
    assert relation_entropy(torch.zeros(3, k), 0.1) == pytest.approx(math.log(k), rel=1e-6)
    logits = torch.full((2, k), -1.0)
    logits[:, 0] = 1.0
    assert relation_entropy(logits, 1e-3) == pytest.approx(0.0, abs=1e-6)
    # by hand at tau 0.5 for one row of three
    row = torch.tensor([[0.2, 0.1, -0.3]])
    p = torch.softmax(row / 0.5, dim=1)
    assert relation_entropy(row, 0.5) == pytest.approx(-(p * p.log()).sum().item(), rel=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="effective_rank"):
        effective_rank(torch.randn(1, 4))
    with pytest.raises(ValueError, match="tau"):
        relation_entropy(torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="mean_pairwise_cosine"):
        mean_pairwise_cosine(torch.randn(4))
