"""CGH losses as pure functions: relational cross-entropy between contexts, InfoNCE warm-up, the ramp.

Notation (``B`` batch, ``K`` queue length, ``D`` embedding size; every embedding L2-normalised):

* a *context* is ``"g"`` (global: GAP of the last stage -> MLP) or ``"h"`` (hypercolumn head);
* ``s_c^x = z_c^x @ Q_c.T`` are the relation logits of student (``x=s``) or teacher (``x=t``) embeddings
  against the queue ``Q_c`` of the same context (``[K, D]``, one past teacher embedding per row);
* a term ``"a2b"`` takes its target from the teacher's relations in context ``a`` (at ``tau_t^a``) and
  trains the student's relations in context ``b`` (at ``tau_s^b``).

CGH uses the two cross terms ``g2h`` and ``h2g`` (0.5 each); ReSSL is the single term ``g2g``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

CONTEXTS = ("g", "h")
TERMS = ("g2h", "h2g", "g2g", "h2h")


def relation_logits(z: Tensor, queue: Tensor) -> Tensor:
    """Cosine similarities of a batch to the queue: ``z [B, D]``, ``queue [K, D]`` -> ``[B, K]``."""
    if z.dim() != 2 or queue.dim() != 2 or z.shape[1] != queue.shape[1]:
        raise ValueError(
            f"relation_logits: expected z [B, D] and queue [K, D], got {tuple(z.shape)} and {tuple(queue.shape)}"
        )
    return z @ queue.t()


def relation_targets(teacher_logits: Tensor, tau_t: float) -> Tensor:
    """Teacher relation distribution ``softmax(s^t / tau_t)`` (no gradient): ``[B, K]`` -> ``[B, K]``."""
    return F.softmax(teacher_logits.detach() / tau_t, dim=1)


def relation_ce(student_logits: Tensor, targets: Tensor, tau_s: float) -> Tensor:
    """Soft cross-entropy ``-mean_i sum_k p[i,k] log softmax(s^s / tau_s)[i,k]``.

    student_logits: ``[B, K]`` relations of the student; targets: ``[B, K]`` rows summing to 1.
    Returns a scalar.
    """
    if student_logits.shape != targets.shape:
        raise ValueError(f"relation_ce: logits {tuple(student_logits.shape)} vs targets {tuple(targets.shape)}")
    return -(targets * F.log_softmax(student_logits / tau_s, dim=1)).sum(dim=1).mean()


def parse_term(term: str) -> tuple[str, str]:
    """``"g2h"`` -> ``("g", "h")`` (teacher context, student context); clear error on anything else."""
    if term not in TERMS:
        raise ValueError(f"unknown loss term {term!r}; choose from {TERMS} (teacher context '2' student context)")
    return term[0], term[2]


def relational_loss(
    student_logits: Mapping[str, Tensor],
    teacher_logits: Mapping[str, Tensor],
    terms: Mapping[str, float],
    tau_student: Mapping[str, float],
    tau_teacher: Mapping[str, float],
    local_logits: Sequence[Tensor] = (),
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of relational terms between contexts.

    student_logits / teacher_logits: context (``"g"``/``"h"``) -> ``[B, K]`` relations against that context's
    queue. terms: e.g. ``{"g2h": 0.5, "h2g": 0.5}`` (CGH) or ``{"g2g": 1.0}`` (ReSSL).
    tau_student / tau_teacher: context -> temperature (official: g 0.1 / 0.04, h 0.08 / 0.08).
    local_logits: multi-crop, each ``[B, K]``: extra student crops through the *global* branch against
    ``Q_g``; each term whose student context is global averages them in: ``(L + sum_j L_j) / (1 + n_local)``
    with the term's own target (as the official code does for ``h2g``).

    Returns ``(loss, per-term unweighted values)``.
    """
    total = None
    parts: dict[str, Tensor] = {}
    for term, weight in terms.items():
        t_ctx, s_ctx = parse_term(term)
        for ctx, src in ((t_ctx, teacher_logits), (s_ctx, student_logits)):
            if ctx not in src:
                raise ValueError(f"loss term {term!r} needs {ctx!r} logits; got {sorted(src)}")
        target = relation_targets(teacher_logits[t_ctx], tau_teacher[t_ctx])
        value = relation_ce(student_logits[s_ctx], target, tau_student[s_ctx])
        if s_ctx == "g" and local_logits:
            for loc in local_logits:
                value = value + relation_ce(loc, target, tau_student["g"])
            value = value / (1 + len(local_logits))
        parts[term] = value
        total = weight * value if total is None else total + weight * value
    if total is None:
        raise ValueError("relational_loss: no loss terms given")
    return total, parts


def info_nce(z_student: Tensor, z_teacher: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo InfoNCE: positive ``z^s . z^t``, negatives the queue; label 0.

    z_student, z_teacher: ``[B, D]``; queue: ``[K, D]``. Returns a scalar.
    """
    pos = (z_student * z_teacher.detach()).sum(dim=1, keepdim=True)  # [B, 1]
    neg = relation_logits(z_student, queue.detach())  # [B, K]
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(z_student.shape[0], dtype=torch.long, device=z_student.device)
    return F.cross_entropy(logits, labels)


def warmup_alpha(step: int, warmup_steps: int) -> float:
    """Weight of the relational loss during the InfoNCE warm-up: ``step / warmup_steps`` clipped to [0, 1].

    ``warmup_steps = warmup_loss_epochs * steps_per_epoch``; 0 disables the warm-up (alpha = 1).
    """
    if warmup_steps <= 0:
        return 1.0
    return min(max(step / warmup_steps, 0.0), 1.0)


def combine_with_warmup(relational: Tensor, nce_terms: Sequence[Tensor], alpha: float) -> Tensor:
    """``(1 - alpha) * sum(nce_terms) + alpha * relational``; just ``relational`` once ``alpha >= 1``."""
    if alpha >= 1.0 or not nce_terms:
        return relational
    return (1.0 - alpha) * torch.stack(list(nce_terms)).sum() + alpha * relational
