"""Fréchet distance against closed forms and scipy; moments against torch.cov; a randomly initialised expert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from projects.stylegan2.metrics import FeatureMoments, frechet_distance, frechet_distance_of


def test_diagonal_gaussians_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    v1, v2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    # |mu1 - mu2|^2 + sum (sqrt v1 - sqrt v2)^2 = (1 + 0 + 4) + (1 + 1 + 4)
    assert frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(11.0, abs=1e-9)
    assert frechet_distance(mu1, torch.diag(v1), mu1, torch.diag(v1)) == pytest.approx(0.0, abs=1e-9)


def test_one_dimensional_by_hand():
    # W2^2 of N(1, 4) and N(-2, 1): (1 + 2)^2 + (2 - 1)^2 = 10
    assert frechet_distance(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[1.0]])
    ) == (pytest.approx(10.0))


def test_full_covariances_against_scipy_sqrtm():
    from scipy import linalg

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), b @ b.T
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((mu1 - mu2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_moments_equal_mean_and_unbiased_covariance_in_batches():
    x = torch.randn(50, 4, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64) + 5
    m = FeatureMoments()
    for part in x.split(7):
        m.update(part.float())
    mu, cov = m.stats()
    torch.testing.assert_close(mu, x.float().double().mean(0))
    torch.testing.assert_close(cov, torch.cov(x.float().double().T), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        FeatureMoments().stats()
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        FeatureMoments().update(torch.randn(3))


def test_samples_of_known_gaussians_approach_the_closed_form():
    g = torch.Generator().manual_seed(1)
    n = 40_000
    a = torch.randn(n, 2, generator=g) * torch.tensor([1.0, 2.0])
    b = torch.randn(n, 2, generator=g) * torch.tensor([2.0, 2.0]) + torch.tensor([1.0, 0.0])
    assert frechet_distance_of(a, b) == pytest.approx(1.0 + 1.0, abs=0.08)  # |dmu|^2 = 1, (1-2)^2 + 0 = 1


def test_randomly_initialised_identity_expert_gives_a_distance():
    from common.face.faceworld_experts import FaceWorldIdentity

    torch.manual_seed(0)
    expert = FaceWorldIdentity().eval()
    x = torch.rand(24, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        fa, fb, fc = expert.embed_images(x[:12]), expert.embed_images(x[12:]), expert.embed_images(-x[:12])
    assert fa.shape[0] == 12
    same = frechet_distance_of(fa, fa)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance_of(fa, fc) > 0 and frechet_distance_of(fa, fb) >= 0
