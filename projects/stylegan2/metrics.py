"""Fréchet distance between feature distributions (FID's formula in any feature space), DDP-ready moments.

``frechet_distance(mu1, sigma1, mu2, sigma2) = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``,
computed in float64 with ``tr((s1 s2)^(1/2)) = sum sqrt(eig(s1^(1/2) s2 s1^(1/2)))`` (a symmetric PSD matrix with
the same eigenvalues as ``s1 s2``, so no complex square root is needed). ``FeatureMoments`` accumulates
``n``, ``sum x`` and ``sum x x^T`` in float64 and all-reduces them across ranks, so a distributed evaluation gives
the statistics of the combined set; covariances are unbiased (``n - 1``), as ``numpy.cov`` in the FID code.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from common.distributed import is_distributed


def _sqrtm_psd(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between ``N(mu1 [D], sigma1 [D,D])`` and ``N(mu2, sigma2)`` (float64 inside)."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(
            f"frechet_distance: shapes differ: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)}/{tuple(sigma2.shape)}"
        )
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    r = _sqrtm_psd(s1)
    m = r @ s2 @ r
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)


class FeatureMoments:
    """Running ``n``, ``sum x`` and ``sum x x^T`` (float64) of features ``[N, D]``; ``stats()`` -> (mean, cov)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: Tensor | None = None
        self.outer: Tensor | None = None

    def update(self, feats: Tensor) -> None:
        """Add a batch ``[N, D]``."""
        if feats.ndim != 2:
            raise ValueError(f"FeatureMoments.update: features must be [N, D], got {tuple(feats.shape)}")
        f = feats.detach().double()
        if self.sum is None:
            self.sum = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def all_reduce(self) -> None:
        """Sum the moments over DDP ranks (every rank must call it, with features of the same dimension)."""
        if not is_distributed():
            return
        if self.sum is None:
            raise RuntimeError("FeatureMoments.all_reduce: this rank saw no features")
        n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.sum.device)
        for t in (n, self.sum, self.outer):
            dist.all_reduce(t)
        self.n = int(n.item())

    def stats(self) -> tuple[Tensor, Tensor]:
        """``(mean [D], unbiased covariance [D, D])``; needs at least two samples."""
        if self.sum is None or self.n < 2:
            raise ValueError(f"FeatureMoments: need at least 2 samples for a covariance, have {self.n}")
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def frechet_distance_of(a: Tensor | FeatureMoments, b: Tensor | FeatureMoments) -> float:
    """Fréchet distance between two feature sets (``[N, D]`` tensors or accumulated moments)."""
    stats = []
    for x in (a, b):
        if isinstance(x, Tensor):
            m = FeatureMoments()
            m.update(x)
            x = m
        stats.append(x.stats())
    (mu1, s1), (mu2, s2) = stats
    return frechet_distance(mu1, s1, mu2, s2)
