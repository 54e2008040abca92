"""HyperReenact training losses as pure functions.

The authors never released HyperReenact's training code. The terms and weights follow their sibling code
(StyleMask ``libs/criteria/losses.py`` + ``trainer.py::calculate_loss``, stylegan_directions
``calculate_losses_paired``): pixel L1 (1), LPIPS (10), identity ``1 - cos`` (10), and DECA/FLAME shape, eye and
mouth terms (1 each). LPIPS is fed [-1, 1] images (the sibling's [0, 255] input looks like a bug).
The identity, vertex, eye and mouth terms are StyleMask's, in common/face/losses.py; this file holds the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor


def pixel_l1(x: Tensor, y: Tensor, value_range: float = 255.0) -> Tensor:
    """Mean absolute difference of two [B, 3, H, W] images in [-1, 1], measured on a [0, value_range] scale
    (the sibling's pixel loss uses [0, 255]; ``value_range=2`` is plain L1 on [-1, 1])."""
    _same_shape(x, y, "pixel_l1")
    return (x - y).abs().mean() * (value_range / 2.0)


def lpips_loss(lpips: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Mean LPIPS distance of [B, 3, H, W] images in [-1, 1] (``lpips(x, y)`` returns per-sample distances)."""
    _same_shape(x, y, "lpips_loss")
    return lpips(x, y).mean()


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
