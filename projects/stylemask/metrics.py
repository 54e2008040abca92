"""StyleMask evaluation: the official synthetic validation (CSIM, pose error, normalised expression error).

Differences from the official ``calculate_evaluation_metrics``: every pair of every batch is scored (the
official code scores pose and expression on element [0] of each batch only) and the per-pair values are
averaged over all pairs, synchronised across DDP ranks by torchmetrics.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from common.metrics.face import faceworld_expression_ranges

__all__ = [
    "NUM_EXPRESSIONS",
    "PairMean",
    "expression_error",
    "faceworld_expression_ranges",
    "load_expression_ranges",
    "load_validation_pairs",
    "pose_error",
]

NUM_EXPRESSIONS = 20  # expression coefficients 0..19 enter the official error, with the jaw opening


def load_expression_ranges(path: str | os.PathLike) -> Tensor:
    """``ranges_FFHQ.npy``: ``[54, 2]`` (min, max) of yaw, pitch, roll, jaw, exp0..49 -> float tensor.

    Any ``[4 + E, 2]`` table with E >= 1 is accepted (the face world's has E = 8); every row needs max > min.
    """
    try:
        arr = np.load(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read expression ranges ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 5:
        raise ValueError(f"{path}: expected a [4 + E, 2] array of (min, max) rows (FFHQ: [54, 2]), got {arr.shape}")
    if not np.all(arr[:, 1] > arr[:, 0]):
        raise ValueError(f"{path}: some rows have max <= min")
    return torch.from_numpy(arr.astype(np.float32))


def load_validation_pairs(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """``random_latent_codes_100.npy`` ``[2N, 512]``: first N source z, next N target z -> ``([N,512], [N,512])``."""
    try:
        arr = np.load(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read latent codes ({exc})") from exc
    if arr.ndim != 2 or arr.shape[0] % 2:
        raise ValueError(f"{path}: expected [2N, dim] latent codes (N sources then N targets), got {arr.shape}")
    z = torch.from_numpy(arr.astype(np.float32))
    n = z.shape[0] // 2
    return z[:n], z[n:]


def pose_error(angles_r: Tensor, angles_t: Tensor) -> Tensor:
    """Per-pair mean absolute difference of (yaw, pitch, roll) in degrees: ``[B,3], [B,3] -> [B]``."""
    return (angles_r - angles_t).abs().mean(dim=1)


def expression_error(
    exp_r: Tensor, jaw_r: Tensor, exp_t: Tensor, jaw_t: Tensor, ranges: Tensor, num_expressions: int | None = None
) -> Tensor:
    """Per-pair official expression error ``[B]``: mean of |jaw| and |exp_0..19| differences after min-max scaling.

    ``exp_*`` ``[B, >=20]`` expression coefficients, ``jaw_*`` ``[B]`` (``pose[:, 3]``), ``ranges`` ``[54, 2]``
    (row 3 = jaw, rows 4.. = expression coefficients). ``num_expressions`` defaults to the official 20, or to all
    coefficients the table has when it has fewer (the face world: 8).
    """
    if num_expressions is None:
        num_expressions = min(NUM_EXPRESSIONS, ranges.shape[0] - 4)
    if ranges.shape[0] < 4 + num_expressions or exp_r.shape[1] < num_expressions:
        raise ValueError(
            f"expression_error: {num_expressions} coefficients need a [>= {4 + num_expressions}, 2] table and "
            f"[B, >= {num_expressions}] codes, got {tuple(ranges.shape)} and {tuple(exp_r.shape)}"
        )
    lo = torch.cat([ranges[3:4, 0], ranges[4 : 4 + num_expressions, 0]]).to(exp_r)
    hi = torch.cat([ranges[3:4, 1], ranges[4 : 4 + num_expressions, 1]]).to(exp_r)
    r = torch.cat([jaw_r[:, None], exp_r[:, :num_expressions]], dim=1)
    t = torch.cat([jaw_t[:, None], exp_t[:, :num_expressions]], dim=1)
    return (((r - lo) / (hi - lo)) - ((t - lo) / (hi - lo))).abs().mean(dim=1)


class PairMean(Metric):
    """Mean of per-pair values over all pairs seen (sum and count states, summed across ranks)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        values = values.detach().flatten()
        if not torch.isfinite(values).all():
            raise ValueError("non-finite per-pair metric values")
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError("PairMean.compute() called before any update")
        return (self.total / self.count).float()
