"""Reenactment metrics as torchmetrics ``Metric``s (sums and counts reduced across DDP ranks).

* ``CSIM``: mean cosine similarity of identity embeddings (ArcFace), reenacted vs source (or target).
* ``PoseDistance``: average pose distance (APD), mean over samples of mean(|d yaw|, |d pitch|, |d roll|)
  in degrees, angles from DECA's global pose (``axis_angle_to_euler``).
* ``ExpressionDistance``: average expression distance (AED) as StyleMask's evaluation: jaw (``pose[:,3]``)
  and the first ``num_expressions`` (20) DECA expression coefficients, each min-max normalised with the
  ranges file (``ranges_FFHQ.npy``: row 3 jaw, rows 4.. expressions), mean of the absolute differences.
  The official code scores only sample 0 of each batch; here every sample counts.
* ``LPIPSMetric``: mean LPIPS distance (inputs in [-1, 1]).
* ``FID``: torchmetrics' Frechet Inception Distance with the Inception weights from a local file.
* ``psnr_metric`` / ``ssim_metric``: torchmetrics PSNR / SSIM set up for [-1, 1] images.
* ``faceworld_expression_ranges``: the face world's min/max table in ``ranges_FFHQ.npy``'s layout.
* ``landmark_pixel_error`` / ``landmark_nme``: per-image mean point-to-point landmark distance, in pixels and
  normalised by the ground truth's interocular (outer eye corner) distance.

Networks passed to a metric (identity network, LPIPS) are referenced, not registered: they stay out of
the metric's state dict, and the LightningModule that owns them moves them to its device.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.image.fid import FrechetInceptionDistance

from common.face.flame import axis_angle_to_euler
from common.weights import resolve

__all__ = [
    "CSIM",
    "FID",
    "ExpressionDistance",
    "LPIPSMetric",
    "PoseDistance",
    "faceworld_expression_ranges",
    "landmark_nme",
    "landmark_pixel_error",
    "load_ranges",
    "psnr_metric",
    "ssim_metric",
]


class _MeanMetric(Metric):
    """Running mean of per-sample values; ``sum`` and ``count`` are summed over ranks."""

    full_state_update = False
    higher_is_better: bool | None = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        values = values.detach().reshape(-1)
        if not torch.isfinite(values).all():
            raise ValueError(f"{type(self).__name__}: non-finite values in update")
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update")
        return (self.total / self.count).float()


class CSIM(_MeanMetric):
    """Mean cosine similarity. ``update(a, b)``: embeddings ``[B,D]``, or images when ``identity`` is given.

    ``identity``: an ``IdentityLoss``-like object with ``similarity(x, y, lm_x, lm_y)`` (e.g.
    ``IdentityLoss(ArcFace(...), crop="psp")``), or a network with ``embed``; images go through it.
    """

    higher_is_better = True

    def __init__(self, identity: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.__dict__["identity"] = identity  # referenced, not a submodule

    def update(
        self, a: Tensor, b: Tensor, landmarks_a: Tensor | None = None, landmarks_b: Tensor | None = None
    ) -> None:
        ident = self.__dict__["identity"]
        with torch.no_grad():
            if ident is None:
                if a.ndim != 2 or a.shape != b.shape:
                    raise ValueError(
                        f"CSIM without a network expects embeddings [B,D], got {tuple(a.shape)}, {tuple(b.shape)}"
                    )
                sim = F.cosine_similarity(a, b, dim=1)
            elif hasattr(ident, "similarity"):
                sim = ident.similarity(a, b, landmarks_a, landmarks_b)
            else:
                sim = F.cosine_similarity(ident.embed(a), ident.embed(b), dim=1)
        self._add(sim)


class PoseDistance(_MeanMetric):
    """Average pose distance in degrees. ``update(pred, target)``: DECA poses ``[B,6]`` or global axis-angle
    ``[B,3]``; with ``euler=True`` inputs are (yaw, pitch, roll) degrees ``[B,3]``.
    ``per_angle()`` gives the mean |difference| of each angle."""

    higher_is_better = False

    def __init__(self, euler: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.euler = euler
        self.add_state("angle_total", default=torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")

    def _angles(self, pose: Tensor) -> Tensor:
        if self.euler:
            if pose.ndim != 2 or pose.shape[1] != 3:
                raise ValueError(f"PoseDistance(euler=True) expects [B,3] angles, got {tuple(pose.shape)}")
            return pose
        if pose.ndim != 2 or pose.shape[1] not in (3, 6):
            raise ValueError(f"PoseDistance expects DECA poses [B,6] or axis-angle [B,3], got {tuple(pose.shape)}")
        return axis_angle_to_euler(pose[:, :3])

    def update(self, pred: Tensor, target: Tensor) -> None:
        with torch.no_grad():
            diff = (self._angles(pred) - self._angles(target)).abs()
        self.angle_total += diff.double().sum(0)
        self._add(diff.mean(1))

    def per_angle(self) -> dict[str, Tensor]:
        """Mean absolute yaw, pitch and roll differences (degrees)."""
        n = self.count.clamp(min=1)
        return {k: (self.angle_total[i] / n).float() for i, k in enumerate(("yaw", "pitch", "roll"))}


def load_ranges(ranges: str | os.PathLike | np.ndarray | Tensor) -> Tensor:
    """Min/max table ``[N,2]`` (rows: yaw, pitch, roll, jaw, exp0, ...) from a ``.npy`` file or an array."""
    if isinstance(ranges, (str, os.PathLike)):
        p = Path(ranges)
        if not p.is_file():
            raise FileNotFoundError(f"expression ranges file not found: {p}")
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p}: not a numeric .npy array ({e})") from e
        src = str(p)
    else:
        arr, src = np.asarray(ranges), "ranges"
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 5:
        raise ValueError(f"{src}: expected a [N>=5, 2] min/max table, got shape {arr.shape}")
    if np.any(arr[:, 1] <= arr[:, 0]):
        raise ValueError(f"{src}: every row must have max > min")
    return torch.as_tensor(arr, dtype=torch.float64)


def faceworld_expression_ranges() -> Tensor:
    """The face world's min/max table ``[12, 2]`` in ``ranges_FFHQ.npy``'s layout (yaw, pitch, roll, jaw, exp0..7).

    From the world's samplers rather than estimated on samples (as StyleMask's ``extract_statistics.py`` does for
    FFHQ): the pose limits of ``sample_pose`` (degrees), the jaw angle ``[0, JAW_ANGLE]`` (radians, the attribute
    interface's ``pose[:, 3]``) and each expression coefficient's range. Every row has max > min.
    """
    from common.data import faceworld as fw

    lim = torch.tensor(fw.POSE_LIMIT)
    rows = [torch.stack([-lim, lim], 1), torch.tensor([[0.0, fw.JAW_ANGLE]])]
    rows.append(torch.stack([fw.EXPRESSION_LOW, fw.EXPRESSION_HIGH], 1))
    return torch.cat(rows).float()


class ExpressionDistance(_MeanMetric):
    """Average expression distance (StyleMask's normalisation when ``ranges`` is given, raw otherwise).

    ``update(exp_pred [B,50], pose_pred [B,6], exp_target [B,50], pose_target [B,6])``; the jaw value is
    ``pose[:,3]``. Per sample: mean over jaw and the first ``num_expressions`` coefficients of
    ``|norm(pred) - norm(target)|`` with ``norm(v) = (v - min) / (max - min)``.
    """

    higher_is_better = False

    def __init__(
        self,
        ranges: str | os.PathLike | np.ndarray | Tensor | None = None,
        num_expressions: int = 20,
        include_jaw: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_expressions, self.include_jaw = num_expressions, include_jaw
        if ranges is not None:
            table = load_ranges(ranges)
            if table.shape[0] < 4 + num_expressions:
                raise ValueError(f"ranges has {table.shape[0]} rows; need 4 + {num_expressions}")
            rows = table[3 if include_jaw else 4 : 4 + num_expressions]
            self.register_buffer("lo", rows[:, 0].float(), persistent=False)
            self.register_buffer("span", (rows[:, 1] - rows[:, 0]).float(), persistent=False)
        else:
            self.lo = self.span = None

    def _vector(self, exp: Tensor, pose: Tensor) -> Tensor:
        if exp.ndim != 2 or exp.shape[1] < self.num_expressions or pose.ndim != 2 or pose.shape[1] != 6:
            raise ValueError(
                f"ExpressionDistance expects exp [B,>={self.num_expressions}] and pose [B,6], "
                f"got {tuple(exp.shape)}, {tuple(pose.shape)}"
            )
        parts = [pose[:, 3:4]] if self.include_jaw else []
        v = torch.cat(parts + [exp[:, : self.num_expressions]], 1)
        if self.lo is not None:
            v = (v - self.lo.to(v)) / self.span.to(v)
        return v

    def update(self, exp_pred: Tensor, pose_pred: Tensor, exp_target: Tensor, pose_target: Tensor) -> None:
        with torch.no_grad():
            d = (self._vector(exp_pred, pose_pred) - self._vector(exp_target, pose_target)).abs().mean(1)
        self._add(d)


class LPIPSMetric(_MeanMetric):
    """Mean LPIPS over samples. ``lpips``: a ``common.face.lpips.LPIPS`` (referenced, not registered)."""

    higher_is_better = False

    def __init__(self, lpips: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.__dict__["lpips"] = lpips

    def update(self, a: Tensor, b: Tensor) -> None:
        with torch.no_grad():
            self._add(self.__dict__["lpips"](a, b))


class FID(FrechetInceptionDistance):
    """torchmetrics FID with the Inception weights of ``weights_path`` (registry ``fid_inception``).

    The file is read with ``torch.load(weights_only=True)`` and handed to torchmetrics through a private
    temporary copy (torchmetrics/torch-fidelity would unpickle the user's file without restriction).
    ``update(images, real)`` takes images in [-1, 1] (``input_range="[-1,1]"``), [0, 1] or uint8.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        feature: int = 2048,
        input_range: str = "[-1,1]",
        **kwargs,
    ) -> None:
        from common.checkpoint import check_finite
        from common.face.checkpoint import CheckpointError, load_checkpoint

        if input_range not in ("[-1,1]", "[0,1]", "uint8"):
            raise ValueError(f"input_range must be '[-1,1]', '[0,1]' or 'uint8', got {input_range!r}")
        p = resolve("fid_inception", weights_path)
        state = load_checkpoint(p, "FID Inception weights")
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{p}: expected a state dict of tensors for the FID Inception")
        check_finite(state, p)
        with tempfile.TemporaryDirectory() as d:
            safe = Path(d) / "inception.pth"
            torch.save(dict(state), safe)
            try:
                super().__init__(
                    feature=feature,
                    normalize=input_range != "uint8",
                    feature_extractor_weights_path=str(safe),
                    **kwargs,
                )
            except RuntimeError as e:  # load_state_dict mismatch inside torch-fidelity
                raise CheckpointError(f"{p}: does not match the FID Inception: {e}") from e
        self.input_range = input_range

    def update(self, imgs: Tensor, real: bool) -> None:
        if self.input_range == "[-1,1]":
            imgs = ((imgs + 1) / 2).clamp(0, 1)
        super().update(imgs, real)


def psnr_metric(data_range: float = 2.0, **kwargs) -> PeakSignalNoiseRatio:
    """PSNR for images in [-1, 1] (``data_range=2``); averaged over images (``reduction`` per sample)."""
    return PeakSignalNoiseRatio(data_range=data_range, reduction="elementwise_mean", dim=(1, 2, 3), **kwargs)


def ssim_metric(data_range: float = 2.0, **kwargs) -> StructuralSimilarityIndexMeasure:
    """SSIM (Gaussian 11x11, sigma 1.5) for images in [-1, 1]."""
    return StructuralSimilarityIndexMeasure(data_range=data_range, **kwargs)


def landmark_pixel_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image mean Euclidean distance ``[B]`` of landmarks ``pred, target [B, N, 2]`` (pixels)."""
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmark error expects two [B,N,2] tensors, got {tuple(pred.shape)}, {tuple(target.shape)}")
    return (pred - target).norm(dim=-1).mean(dim=1)


def landmark_nme(pred: Tensor, target: Tensor, eye_corners: tuple[int, int] = (36, 45)) -> Tensor:
    """Per-image normalised mean error ``[B]``: :func:`landmark_pixel_error` divided by the ground truth's
    interocular distance (68-point layout: outer eye corners 36 and 45, the 300-W convention)."""
    err = landmark_pixel_error(pred, target)
    d = (target[:, eye_corners[0]] - target[:, eye_corners[1]]).norm(dim=-1)
    if (d <= 0).any():
        raise ValueError("landmark_nme: a ground-truth face has zero interocular distance")
    return err / d
