"""StyleGAN2's losses and lazy regularisers (Karras et al. 2020; rosinality's ``train.py`` conventions).

Pure functions of tensors:

* ``d_logistic_loss(real_pred [B,1], fake_pred [B,1])``: ``mean softplus(-D(x)) + mean softplus(D(G(z)))``.
* ``g_nonsaturating_loss(fake_pred [B,1])``: ``mean softplus(-D(G(z)))``.
* ``d_r1_loss(real_pred [B,1], real_img [B,3,H,W])``: ``mean_b ||d sum(D(x)) / d x_b||^2`` (un-weighted; the
  training step multiplies by ``r1 / 2 * d_reg_every``), differentiable (create_graph) so its gradient reaches D.
* ``g_path_regularize(fake_img, latents, mean_path_length, decay, noise)``: path-length penalty
  ``mean_b (|J_b^T y| - a)^2`` with ``y ~ N(0, I) / sqrt(H W)``, ``|.|`` the root of the per-layer mean of
  squared W+ gradients, and ``a`` the running mean updated as ``a + decay * (mean_b |J_b^T y| - a)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def d_logistic_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """Discriminator's logistic loss: ``softplus(-real).mean() + softplus(fake).mean()`` (a scalar)."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: Tensor) -> Tensor:
    """Generator's non-saturating logistic loss: ``softplus(-fake).mean()`` (a scalar)."""
    return F.softplus(-fake_pred).mean()


def d_r1_loss(real_pred: Tensor, real_img: Tensor) -> Tensor:
    """R1 penalty ``mean_b sum_pixels (d sum(real_pred) / d real_img)^2``; ``real_img`` must require grad.

    Returns a scalar with a graph (``create_graph=True``) through D's parameters.
    """
    if not real_img.requires_grad:
        raise ValueError("d_r1_loss: real_img must require grad (set it before the discriminator's forward)")
    (grad,) = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_lengths(fake_img: Tensor, latents: Tensor, noise: Tensor | None = None) -> Tensor:
    """Per-sample ``|J^T y|``: ``sqrt(mean over W+ rows of sum over dims of (d sum(img * y) / d w)^2)``, ``[B]``.

    ``y = noise / sqrt(H * W)`` with ``noise`` standard normal ``[B, 3, H, W]`` (drawn here when None).
    ``latents`` ``[B, n_latent, D]`` (W+) must be the tensor ``fake_img`` was rendered from; differentiable.
    """
    if noise is None:
        noise = torch.randn_like(fake_img)
    y = noise / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = torch.autograd.grad((fake_img * y).sum(), latents, create_graph=True)
    return torch.sqrt(grad.pow(2).sum(2).mean(1))


def g_path_regularize(
    fake_img: Tensor,
    latents: Tensor,
    mean_path_length: Tensor | float,
    decay: float = 0.01,
    noise: Tensor | None = None,
    batch_mean: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Path-length regularisation: returns ``(penalty, new mean path length (detached), path lengths [B])``.

    ``penalty = mean_b (pl_b - a_new)^2`` with ``a_new = a + decay * (mean_b pl_b - a)``; as in the official
    code ``a_new`` keeps its graph through this batch's mean. ``batch_mean`` replaces the batch mean's *value*
    (e.g. an average over DDP ranks; its gradient still flows through the local mean).
    """
    pl = path_lengths(fake_img, latents, noise)
    local = pl.mean()
    mean = local if batch_mean is None else local + (batch_mean(local.detach()) - local).detach()
    path_mean = mean_path_length + decay * (mean - mean_path_length)
    penalty = (pl - path_mean).pow(2).mean()
    return penalty, path_mean.detach(), pl
