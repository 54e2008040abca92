"""StyleMask's losses as pure functions (official ``libs/criteria/losses.py``, ``id_loss.py``, ``trainer.py``).

Total loss of one step (official defaults):
    L = lambda_shape * (L_vertex + L_eye + L_mouth) + lambda_id * L_id [+ lambda_per * LPIPS]
      + the same terms for the recurrent cycle (on by default): I1 = mix(s_s, s_t'), I2 = mix(s_r, s_t'),
        both against (source shape, t' expression, t' pose) and both with identity against I_s,
        plus lambda_per * LPIPS(I1, I2).
Ground truth 3D coefficients: shape from the source, expression and (6-d) pose from the target; the camera is
replaced by [8, 0, 0] for both sides so the comparison ignores position and scale. The terms themselves
(vertex, eye, mouth, identity) are common/face/losses.py, shared with HyperReenact; this file composes them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from common.face.losses import FlameFn, flame_shape_terms, identity_loss
from common.face.lpips import RANGE_LIMIT


def cosine_similarity(emb_a: Tensor, emb_b: Tensor) -> Tensor:
    """Per-pair cosine ``[B]`` of embeddings ``[B, D]`` (normalised here, so raw features are fine too)."""
    a = emb_a / emb_a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = emb_b / emb_b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (a * b).sum(dim=1)


def ground_truth(source: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """Ground-truth coefficients of a reenactment: source shape, target expression, target 6-d pose (jaw included)."""
    return {"shape": source["shape"], "exp": target["exp"], "pose": target["pose"]}


def reenactment_loss(
    flame: FlameFn,
    source: dict[str, Tensor],
    target: dict[str, Tensor],
    reenacted: dict[str, Tensor],
    emb_source: Tensor,
    emb_reenacted: Tensor,
    lambda_shape: float = 1.0,
    lambda_identity: float = 10.0,
    image_size: int = 224,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted loss of one reenactment (no LPIPS): ``(scalar, dict of weighted terms)``.

    ``source``/``target``/``reenacted``: 3D coefficient dicts (``shape [B,S]``, ``exp [B,E]``, ``pose [B,6]``)
    estimated from the three images; ``emb_*``: ``[B, D]`` normalised identity embeddings.
    """
    terms: dict[str, Tensor] = {}
    total = emb_source.new_zeros(())
    if lambda_shape != 0:
        t = flame_shape_terms(flame, ground_truth(source, target), reenacted, image_size)
        for k, v in t.items():
            terms[k] = lambda_shape * v
            total = total + terms[k]
    if lambda_identity != 0:
        terms["identity"] = lambda_identity * identity_loss(emb_reenacted, emb_source.detach())
        total = total + terms["identity"]
    return total, terms


def lpips_term(lpips_fn: Callable[[Tensor, Tensor], Tensor], img_a: Tensor, img_b: Tensor) -> Tensor:
    """Mean LPIPS of two image batches in [-1, 1] (the official code fed [0, 255]: fixed here).

    Raises when the inputs are clearly outside [-1, 1] (e.g. 0-255 images); LPIPS clamps to [-1, 1].
    """
    lo = min(float(img_a.detach().min()), float(img_b.detach().min()))
    hi = max(float(img_a.detach().max()), float(img_b.detach().max()))
    if lo < -RANGE_LIMIT or hi > RANGE_LIMIT:  # a generator's small overshoot of [-1, 1] is fine
        raise ValueError(f"LPIPS expects images in [-1, 1]; got values in [{lo:.2f}, {hi:.2f}]")
    return lpips_fn(img_a, img_b).mean()
