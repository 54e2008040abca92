"""Representation-collapse statistics for self-supervised training (pure functions, no state).

* :func:`effective_rank`: ``exp(H(p))`` with ``p`` the normalised singular values of the centred feature
  matrix (Roy & Vetterli, 2007). 1 when every sample lies on one line (complete or dimensional collapse to
  rank 1), ``min(N, D)`` when all singular values are equal.
* :func:`relation_entropy`: mean entropy (nats) of the rows of ``softmax(logits / tau)``: for a relational
  method (ReSSL, CGH) the teacher's target distribution over the queue. ``log K`` means a uniform target
  (nothing is learned from it), 0 a one-hot target.
* :func:`mean_pairwise_cosine`: mean cosine similarity between distinct rows: near 0 for spread embeddings,
  1 when they all point the same way (e.g. a queue filled with copies of one vector).
* :func:`normalized_std`: ``sqrt(D) * mean_d std_n(z[n, d] / |z[n]|)`` (SimSiam's collapse check): close to 1
  for unit vectors spread over the sphere, 0 when they are all equal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_2d(x: Tensor, name: str, min_rows: int = 1) -> None:
    if x.dim() != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name}: expected a [N, D] matrix with N >= {min_rows}, got shape {tuple(x.shape)}")


@torch.no_grad()
def effective_rank(features: Tensor, center: bool = True) -> Tensor:
    """Effective rank of ``features [N, D]`` (a scalar in ``[1, min(N, D)]``); rows centred first when asked.

    A matrix whose centred rows are all zero (every sample identical) has effective rank 1 by convention.
    """
    _check_2d(features, "effective_rank", 2)
    x = features.double()
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= 1e-12 * max(1.0, float(features.abs().max())):
        return torch.ones((), dtype=features.dtype, device=features.device)
    p = s / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).to(features.dtype)


@torch.no_grad()
def relation_entropy(logits: Tensor, tau: float) -> Tensor:
    """Mean entropy (nats) of ``softmax(logits [B, K] / tau)`` over the rows; at most ``log K``."""
    _check_2d(logits, "relation_entropy")
    if tau <= 0:
        raise ValueError(f"relation_entropy: tau must be positive, got {tau}")
    logp = F.log_softmax(logits.float() / tau, dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


@torch.no_grad()
def mean_pairwise_cosine(z: Tensor) -> Tensor:
    """Mean cosine similarity over ordered pairs ``i != j`` of the rows of ``z [N, D]`` (N >= 2)."""
    _check_2d(z, "mean_pairwise_cosine", 2)
    u = F.normalize(z.double(), dim=1)
    n = u.shape[0]
    s = u.sum(dim=0)
    # sum_{i != j} u_i.u_j = |sum u|^2 - sum |u_i|^2 (rows of zero norm stay zero after normalize)
    off = s @ s - (u * u).sum()
    return (off / (n * (n - 1))).to(z.dtype)


@torch.no_grad()
def normalized_std(z: Tensor) -> Tensor:
    """``sqrt(D)`` times the mean per-dimension standard deviation of the L2-normalised rows of ``z [N, D]``."""
    _check_2d(z, "normalized_std", 2)
    u = F.normalize(z.float(), dim=1)
    return u.std(dim=0).mean() * math.sqrt(u.shape[1])


@torch.no_grad()
def collapse_stats(z: Tensor) -> dict[str, Tensor]:
    """All embedding statistics of ``z [N, D]`` at once: ``erank``, ``erank_frac`` (erank / min(N, D)),
    ``mean_cos`` and ``std`` (see the module docstring)."""
    er = effective_rank(z)
    return {
        "erank": er,
        "erank_frac": er / min(z.shape),
        "mean_cos": mean_pairwise_cosine(z),
        "std": normalized_std(z),
    }
