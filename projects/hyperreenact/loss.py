"""HyperReenact training losses as pure functions.

The authors never released HyperReenact's training code. The terms and weights follow their sibling code
(StyleMask ``libs/criteria/losses.py`` + ``trainer.py::calculate_loss``, stylegan_directions
``calculate_losses_paired``): pixel L1 (1), LPIPS (10), identity ``1 - cos`` (10), and DECA/FLAME shape, eye and
mouth terms (1 each). LPIPS is fed [-1, 1] images (the sibling's [0, 255] input looks like a bug).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

EYE_PAIRS: tuple[tuple[int, int], ...] = ((36, 39), (37, 41), (38, 40), (42, 45), (43, 47), (44, 46))
MOUTH_PAIRS: tuple[tuple[int, int], ...] = (
    (48, 54),
    (49, 59),
    (50, 58),
    (51, 57),
    (52, 56),
    (53, 55),
    (60, 64),
    (61, 67),
    (62, 66),
    (63, 65),
)
# The sibling decodes both shapes with an orthographic camera fixed to scale 8, no translation.
FIXED_CAM = (8.0, 0.0, 0.0)


def pixel_l1(x: Tensor, y: Tensor, value_range: float = 255.0) -> Tensor:
    """Mean absolute difference of two [B, 3, H, W] images in [-1, 1], measured on a [0, value_range] scale
    (the sibling's pixel loss uses [0, 255]; ``value_range=2`` is plain L1 on [-1, 1])."""
    _same_shape(x, y, "pixel_l1")
    return (x - y).abs().mean() * (value_range / 2.0)


def identity_loss(emb: Tensor, emb_ref: Tensor) -> Tensor:
    """Mean ``1 - cos(emb, emb_ref)`` over the batch; embeddings [B, D] (ArcFace)."""
    _same_shape(emb, emb_ref, "identity_loss")
    return (1.0 - F.cosine_similarity(emb, emb_ref, dim=1)).mean()


def lpips_loss(lpips: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Mean LPIPS distance of [B, 3, H, W] images in [-1, 1] (``lpips(x, y)`` returns per-sample distances)."""
    _same_shape(x, y, "lpips_loss")
    return lpips(x, y).mean()


def shape_loss(verts_gt: Tensor, verts: Tensor) -> Tensor:
    """L1 (mean over batch, vertices, xyz) between FLAME vertices [B, V, 3] of the ground truth and the output."""
    _same_shape(verts_gt, verts, "shape_loss")
    return (verts_gt - verts).abs().mean()


def pair_distance_loss(lm_gt: Tensor, lm: Tensor, pairs: Sequence[tuple[int, int]]) -> Tensor:
    """Mean over ``pairs`` of ``L1(|gt_i - gt_j|, |out_i - out_j|)``, per coordinate; landmarks [B, 68, D]."""
    _same_shape(lm_gt, lm, "pair_distance_loss")
    i = torch.tensor([p[0] for p in pairs], device=lm.device)
    j = torch.tensor([p[1] for p in pairs], device=lm.device)
    d_gt = (lm_gt[:, i] - lm_gt[:, j]).abs()
    d = (lm[:, i] - lm[:, j]).abs()
    # mean over (B, D) per pair, then mean over pairs == mean over everything (equal sizes)
    return (d_gt - d).abs().mean()


def eye_loss(lm_gt: Tensor, lm: Tensor) -> Tensor:
    """Eye-opening term: :func:`pair_distance_loss` over :data:`EYE_PAIRS` (68-point indexing)."""
    return pair_distance_loss(lm_gt, lm, EYE_PAIRS)


def mouth_loss(lm_gt: Tensor, lm: Tensor) -> Tensor:
    """Mouth term: :func:`pair_distance_loss` over :data:`MOUTH_PAIRS` (68-point indexing)."""
    return pair_distance_loss(lm_gt, lm, MOUTH_PAIRS)


def ground_truth_coefficients(shape_from: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """FLAME coefficients the output should have: identity shape of ``shape_from`` (the target in self-
    reenactment, the source in cross-reenactment), pose and expression of the target, the fixed camera."""
    cam = torch.tensor(FIXED_CAM, dtype=target["pose"].dtype, device=target["pose"].device)
    return {
        "shape": shape_from["shape"],
        "exp": target["exp"],
        "pose": target["pose"],
        "cam": cam.expand(target["pose"].shape[0], 3),
    }


def with_fixed_cam(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The output's own shape/expression/pose with the fixed camera (the sibling overwrites ``cam``)."""
    cam = torch.tensor(FIXED_CAM, dtype=params["pose"].dtype, device=params["pose"].device)
    return {
        "shape": params["shape"],
        "exp": params["exp"],
        "pose": params["pose"],
        "cam": cam.expand(len(params["pose"]), 3),
    }


def weighted_total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """``sum_k weights[k] * terms[k]`` over the terms present (a term without a weight is an error)."""
    missing = [k for k in terms if k not in weights]
    if missing:
        raise KeyError(f"no weight for loss terms {missing}")
    if not terms:
        raise ValueError("no loss terms to sum")
    return sum(weights[k] * v for k, v in terms.items())  # type: ignore[return-value]


def _same_shape(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
