"""3D and identity loss terms of StyleMask's official code, which HyperReenact's sibling code shares.

Official ``libs/criteria/losses.py`` and ``id_loss.py`` of StelaBou/StyleMask (HyperReenact never released its
training code; its sibling stylegan_directions uses the same terms):

* ``vertex_loss``: L1 between FLAME vertices of the ground truth and of the output;
* ``eye_loss`` / ``mouth_loss``: L1 between per-axis landmark pair distances (eyelids, lips; 68-point layout);
* ``identity_loss``: ``1 - cos`` of identity embeddings.

Both projects decode FLAME with the orthographic camera fixed to :data:`FIXED_CAM` on both sides of a comparison,
so the terms ignore position and scale (``common.face.flame.orthographic_project`` / ``to_image_space``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from common.face.flame import orthographic_project, to_image_space

# Eyelid pairs (upper, lower) and eye corners of the 68-point layout.
EYE_PAIRS: tuple[tuple[int, int], ...] = ((36, 39), (37, 41), (38, 40), (42, 45), (43, 47), (44, 46))
# Mouth corners and upper/lower lip pairs, outer (48-59) and inner (60-67) contour.
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
# DECA camera (scale, tx, ty) both sides of a 3D comparison use in place of their estimated ones.
FIXED_CAM: tuple[float, float, float] = (8.0, 0.0, 0.0)


def _same_shape(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def vertex_loss(verts_gt: Tensor, verts: Tensor) -> Tensor:
    """L1 between FLAME vertices ``[B, V, 3]`` of the ground truth and the output: mean over B x V x 3 (scalar)."""
    _same_shape(verts_gt, verts, "vertex_loss")
    return (verts_gt - verts).abs().mean()


def landmark_pair_loss(lm_gt: Tensor, lm: Tensor, pairs: Sequence[tuple[int, int]]) -> Tensor:
    """Mean over ``pairs`` of ``L1(|l_a - l_b|_gt, |l_a - l_b|_out)``, per axis; landmarks ``[B, 68, D]`` -> scalar.

    Each pair's term is a mean over B x D (the official ``L1Loss`` on ``abs(l[:, a] - l[:, b])``); all pairs have
    the same size, so the mean over pairs is the mean over everything.
    """
    _same_shape(lm_gt, lm, "landmark_pair_loss")
    a = torch.tensor([p[0] for p in pairs], device=lm.device)
    b = torch.tensor([p[1] for p in pairs], device=lm.device)
    d_gt = (lm_gt[:, a] - lm_gt[:, b]).abs()
    d = (lm[:, a] - lm[:, b]).abs()
    return (d_gt - d).abs().mean()


def eye_loss(lm_gt: Tensor, lm: Tensor) -> Tensor:
    """Eye-opening term: :func:`landmark_pair_loss` over :data:`EYE_PAIRS` (``[B, 68, D]`` -> scalar)."""
    return landmark_pair_loss(lm_gt, lm, EYE_PAIRS)


def mouth_loss(lm_gt: Tensor, lm: Tensor) -> Tensor:
    """Mouth term: :func:`landmark_pair_loss` over :data:`MOUTH_PAIRS` (``[B, 68, D]`` -> scalar)."""
    return landmark_pair_loss(lm_gt, lm, MOUTH_PAIRS)


def identity_loss(emb: Tensor, emb_ref: Tensor) -> Tensor:
    """``mean_b (1 - cos(emb_b, emb_ref_b))`` of identity embeddings ``[B, D]`` -> scalar.

    The official IDLoss takes the dot product of ArcFace's L2-normalised embeddings; normalising here gives the
    same value (and gradient) on unit vectors and stays a cosine on raw features. Detach ``emb_ref`` yourself
    when it is the fixed reference.
    """
    _same_shape(emb, emb_ref, "identity_loss")
    return (1.0 - F.cosine_similarity(emb, emb_ref, dim=1)).mean()


FlameFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def flame_shape_terms(
    flame: FlameFn, gt: Mapping[str, Tensor], output: Mapping[str, Tensor], image_size: int = 224
) -> dict[str, Tensor]:
    """The three 3D terms of one reenactment: ``{'shape', 'eye', 'mouth'}`` (unweighted scalars).

    ``flame(shape [B,S], exp [B,E], pose [B,6]) -> (vertices [B,V,3], landmarks68 [B,68,3])``. ``gt`` and
    ``output`` hold ``shape``, ``exp`` and ``pose`` (gt: the identity's shape, the target's expression and pose).
    Both sides are decoded as DECA does (orthographic camera fixed to :data:`FIXED_CAM`, y and z flipped, pixels
    of the ``image_size`` crop); the shape term compares those projected vertices, as the official code does.
    """
    b = gt["shape"].shape[0]
    cam = torch.tensor(FIXED_CAM, device=gt["shape"].device, dtype=gt["shape"].dtype).expand(b, 3)
    v_gt, l_gt = flame(gt["shape"], gt["exp"], gt["pose"])
    v_out, l_out = flame(output["shape"], output["exp"], output["pose"])

    def project(points: Tensor) -> Tensor:
        return to_image_space(orthographic_project(points, cam), image_size)

    v_gt, v_out = project(v_gt), project(v_out)
    l_gt, l_out = project(l_gt)[..., :2], project(l_out)[..., :2]
    return {"shape": vertex_loss(v_gt, v_out), "eye": eye_loss(l_gt, l_out), "mouth": mouth_loss(l_gt, l_out)}
