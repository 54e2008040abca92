"""MaskCon's loss and the baselines of the official code, as pure functions.

Notation (per step): B = batch size, D = embedding dimension, K = queue size, C = number of coarse classes.
``q`` are the query embeddings (strong view, query encoder, with grad), ``k`` the key embeddings (weak view,
momentum encoder, no grad), ``queue`` the momentum keys of earlier batches with their coarse labels
``queue_labels`` (``-1`` marks rows that hold no real key yet; they never count as same-coarse).
All embeddings are expected L2-normalised. Every loss is a cross-entropy between a target distribution over
K+1 entries (index 0 = the sample's own key, then the K queue rows) and the MoCo logits at temperature T1.

Modes (the official ``--mode`` plus the two named special cases):

* ``maskcon``: target ``w * soft + (1 - w) * e0`` with ``soft`` the coarse-masked soft labels of the key
  against the queue at temperature T2 (``maskcon_soft_targets``);
* ``selfcon``: MoCo/InfoNCE, target ``e0`` (= ``maskcon`` or ``grafit`` with w = 0);
* ``supcon``: SupCon on the labels given (coarse, or fine for the oracle), uniform over own key and same-label
  queue rows (= ``grafit`` with w = 1);
* ``grafit``: ``w * supcon + (1 - w) * selfcon`` (the official code's MoCo-framework surrogate of Grafit);
* ``coins``: ``w * CE(classifier(backbone(x_q)), y) + (1 - w) * selfcon``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("maskcon", "selfcon", "supcon", "grafit", "coins")


def moco_logits(q: Tensor, k: Tensor, queue: Tensor, t1: float) -> Tensor:
    """Logits ``[q.k, q.u_1, ..., q.u_K] / T1``.

    q: [B, D] query embeddings; k: [B, D] key embeddings (detached here); queue: [K, D].
    Returns [B, K+1], the positive first. In-batch keys of other samples are not negatives (as the official code).
    """
    k = k.detach()
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.detach().t()
    return torch.cat([pos, neg], dim=1) / t1


def same_label_mask(labels: Tensor, queue_labels: Tensor) -> Tensor:
    """M[i, j] = labels[i] == queue_labels[j] and queue_labels[j] >= 0. labels: [B]; queue_labels: [K] -> [B, K]."""
    return (labels[:, None] == queue_labels[None, :]) & (queue_labels[None, :] >= 0)


def instance_targets(batch_size: int, queue_size: int, device=None, dtype=torch.float32) -> Tensor:
    """The one-hot target e0 on the own key: [B, K+1]."""
    t = torch.zeros(batch_size, queue_size + 1, device=device, dtype=dtype)
    t[:, 0] = 1.0
    return t


@torch.no_grad()
def maskcon_soft_targets(k: Tensor, queue: Tensor, labels: Tensor, queue_labels: Tensor, t2: float) -> Tensor:
    """MaskCon's coarse-masked soft labels (before mixing with the instance target).

    k: [B, D] key embeddings; queue: [K, D]; labels: [B] coarse labels; queue_labels: [K]; t2: temperature T2.
    Returns [B, K+1] rows summing to 1: z_0 = 1 (own key) and z_j = exp((s_j - max_{same-coarse} s) / ...) with
    s_j = k.u_j / T2 on same-coarse rows, 0 elsewhere, normalised. So the nearest same-coarse queue row weighs as
    much as the own key. The official code gives NaN when a row has no same-coarse queue item or T2 is tiny;
    here other rows are masked with -inf before the max and an empty row falls back to e0.
    """
    mask = same_label_mask(labels, queue_labels)
    dt = torch.promote_types(k.dtype, torch.float32)  # half-precision keys: soft labels in fp32
    sims = (k.to(dt) @ queue.to(dt).t()) / t2
    sims = sims.masked_fill(~mask, float("-inf"))
    row_max = sims.max(dim=1, keepdim=True).values
    has_any = mask.any(dim=1, keepdim=True)
    shifted = sims - torch.where(has_any, row_max, torch.zeros_like(row_max))
    z = torch.where(mask, shifted.exp(), torch.zeros_like(shifted))
    z = torch.cat([torch.ones_like(z[:, :1]), z], dim=1)
    return (z / z.sum(dim=1, keepdim=True)).to(k.dtype)


@torch.no_grad()
def supcon_targets(labels: Tensor, queue_labels: Tensor, dtype=torch.float32) -> Tensor:
    """SupCon targets with a queue: uniform over the own key and the same-label queue rows.

    labels: [B]; queue_labels: [K]. Returns [B, K+1] = [1, M_i1..M_iK] / (1 + sum_j M_ij).
    """
    mask = same_label_mask(labels, queue_labels).to(dtype)
    z = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
    return z / z.sum(dim=1, keepdim=True)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of -sum_j targets_ij log softmax(logits_i)_j. logits, targets: [B, N] -> scalar."""
    return -(targets.detach() * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def maskcon_targets(k: Tensor, queue: Tensor, labels: Tensor, queue_labels: Tensor, t2: float, w: float) -> Tensor:
    """MaskCon's final target ``w * soft + (1 - w) * e0``: [B, K+1] (arguments as ``maskcon_soft_targets``)."""
    soft = maskcon_soft_targets(k, queue, labels, queue_labels, t2)
    e0 = instance_targets(k.shape[0], queue.shape[0], device=k.device, dtype=soft.dtype)
    return w * soft + (1.0 - w) * e0


def maskcon_loss(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    labels: Tensor,
    queue_labels: Tensor,
    t1: float = 0.1,
    t2: float = 0.05,
    w: float = 0.5,
) -> Tensor:
    """MaskCon loss: soft CE between ``maskcon_targets`` and ``moco_logits(q, k, queue, t1)``.

    q, k: [B, D]; queue: [K, D]; labels: [B] coarse; queue_labels: [K]. Returns a scalar.
    """
    targets = maskcon_targets(k, queue, labels, queue_labels, t2, w)
    return soft_cross_entropy(moco_logits(q, k, queue, t1), targets)


def selfcon_loss(q: Tensor, k: Tensor, queue: Tensor, t1: float = 0.1) -> Tensor:
    """MoCo/InfoNCE: -log softmax(moco_logits)_0, mean over the batch. q, k: [B, D]; queue: [K, D] -> scalar."""
    logits = moco_logits(q, k, queue, t1)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def supcon_loss(q: Tensor, k: Tensor, queue: Tensor, labels: Tensor, queue_labels: Tensor, t1: float = 0.1) -> Tensor:
    """SupCon with a queue on ``labels`` (coarse, or fine for the oracle): soft CE against ``supcon_targets``."""
    targets = supcon_targets(labels, queue_labels, dtype=q.dtype)
    return soft_cross_entropy(moco_logits(q, k, queue, t1), targets)


def grafit_loss(
    q: Tensor, k: Tensor, queue: Tensor, labels: Tensor, queue_labels: Tensor, t1: float = 0.1, w: float = 0.5
) -> Tensor:
    """The official ``grafit`` mode: ``w * supcon_loss + (1 - w) * selfcon_loss`` (shapes as ``supcon_loss``)."""
    logits = moco_logits(q, k, queue, t1)
    targets = w * supcon_targets(labels, queue_labels, dtype=q.dtype) + (1.0 - w) * instance_targets(
        q.shape[0], queue.shape[0], device=q.device, dtype=q.dtype
    )
    return soft_cross_entropy(logits, targets)


def coins_loss(
    q: Tensor, k: Tensor, queue: Tensor, class_logits: Tensor, labels: Tensor, t1: float = 0.1, w: float = 0.5
) -> Tensor:
    """The official ``coins`` mode: ``w * CE(class_logits, labels) + (1 - w) * selfcon_loss``.

    class_logits: [B, C] from a linear classifier on the query backbone feature; labels: [B] coarse.
    """
    return w * F.cross_entropy(class_logits, labels) + (1.0 - w) * selfcon_loss(q, k, queue, t1)


def contrastive_loss(
    mode: str,
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    labels: Tensor,
    queue_labels: Tensor,
    t1: float = 0.1,
    t2: float = 0.05,
    w: float = 0.5,
    class_logits: Tensor | None = None,
) -> Tensor:
    """Dispatch to the loss of ``mode`` (one of ``MODES``); arguments as the individual losses."""
    if mode == "maskcon":
        return maskcon_loss(q, k, queue, labels, queue_labels, t1, t2, w)
    if mode == "selfcon":
        return selfcon_loss(q, k, queue, t1)
    if mode == "supcon":
        return supcon_loss(q, k, queue, labels, queue_labels, t1)
    if mode == "grafit":
        return grafit_loss(q, k, queue, labels, queue_labels, t1, w)
    if mode == "coins":
        if class_logits is None:
            raise ValueError("mode 'coins' needs class_logits (the coarse classifier's output)")
        return coins_loss(q, k, queue, class_logits, labels, t1, w)
    raise ValueError(f"unknown MaskCon mode {mode!r}; expected one of {MODES}")
