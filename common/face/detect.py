"""Face detection with five landmarks: facenet-pytorch's MTCNN (its P/R/O-Net weights ship in the wheel).

``FaceDetector.detect(image)`` returns a ``Detection`` whose ``found`` flag says whether a face was found;
with ``require=True`` a missing face raises ``NoFaceError`` naming the source instead. Nothing is replaced
by zeros. Landmark order (MTCNN): left eye, right eye, nose, left mouth corner, right mouth corner, in
pixel ``(x, y)`` of the input image ("left" = image left).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from common.errors import UserError

__all__ = ["Detection", "FaceDetector", "NoFaceError", "load_rgb", "to_rgb_uint8"]


class NoFaceError(UserError, RuntimeError):
    """No face was found in an image that required one; the message names the image."""


@dataclass
class Detection:
    """Result for one image: ``box`` ``[4]`` (x1, y1, x2, y2) and ``landmarks5`` ``[5,2]`` in pixels, or None.

    ``all_boxes``/``all_landmarks5``/``all_scores`` hold every face found (``[N,4]``, ``[N,5,2]``, ``[N]``).
    """

    found: bool
    box: np.ndarray | None
    landmarks5: np.ndarray | None
    score: float
    all_boxes: np.ndarray | None = None
    all_landmarks5: np.ndarray | None = None
    all_scores: np.ndarray | None = None


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8 [H,W,3]``; a clear error names the file when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    try:
        with Image.open(p) as im:
            return np.array(im.convert("RGB"))
    except OSError as e:
        raise ValueError(f"{p}: cannot read as an image ({e})") from e


def to_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    """Convert a path, PIL image, ``uint8 [H,W,3]`` array, or tensor (``uint8`` or float in [0,1], CHW or HWC)."""
    if isinstance(image, (str, os.PathLike)):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] == 3 and t.shape[-1] != 3:
            t = t.permute(1, 2, 0)
        if t.is_floating_point():
            if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
                raise ValueError(
                    f"{name}: float tensors must hold RGB in [0,1], got range [{t.min():.3g}, {t.max():.3g}]"
                )
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        image = t.numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB image [H,W,3], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got {arr.dtype}")
    return arr


class FaceDetector:
    """MTCNN face detector (facenet-pytorch). ``select`` picks the returned face: "largest" box or best "score"."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        select: str = "largest",
    ) -> None:
        from facenet_pytorch import MTCNN

        if select not in ("largest", "score"):
            raise ValueError(f"select must be 'largest' or 'score', got {select!r}")
        self.select = select
        self.device = torch.device(device)
        self.mtcnn = MTCNN(
            keep_all=True, min_face_size=min_face_size, thresholds=list(thresholds), device=self.device
        ).eval()

    def _result(self, boxes, scores, points) -> Detection:
        if boxes is None or points is None or len(boxes) == 0:
            return Detection(False, None, None, 0.0)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        if self.select == "largest":
            i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        else:
            i = int(np.argmax(scores))
        return Detection(True, boxes[i], points[i], float(scores[i]), boxes, points, scores)

    @torch.no_grad()
    def detect(self, image: Any, require: bool = False, source: str | None = None) -> Detection:
        """Detect faces in one image (path, PIL, ``uint8 [H,W,3]``, or tensor, see ``to_rgb_uint8``).

        ``require=True`` raises ``NoFaceError`` naming ``source`` (or the path) when no face is found.
        """
        name = source or (str(image) if isinstance(image, (str, os.PathLike)) else "image")
        arr = to_rgb_uint8(image, name)
        boxes, scores, points = self.mtcnn.detect(Image.fromarray(arr), landmarks=True)
        det = self._result(boxes, scores, points)
        if require and not det.found:
            raise NoFaceError(f"{name}: no face found by MTCNN (image size {arr.shape[1]}x{arr.shape[0]})")
        return det

    @torch.no_grad()
    def detect_batch(self, images: Any, require: bool = False, sources: list[str] | None = None) -> list[Detection]:
        """Detect in a list of images (or a ``[B,H,W,3]`` array / ``[B,3,H,W]`` tensor); one ``Detection`` each.

        Same-size images run as one MTCNN batch. ``require=True`` raises ``NoFaceError`` naming the first
        image (by ``sources[i]`` or its index) without a face.
        """
        names = [sources[i] if sources else f"image {i}" for i in range(len(images))]
        arrs = [to_rgb_uint8(im, n) for im, n in zip(images, names)]
        if arrs and all(a.shape == arrs[0].shape for a in arrs):
            boxes, scores, points = self.mtcnn.detect(np.stack(arrs), landmarks=True)
            dets = [self._result(b, s, p) for b, s, p in zip(boxes, scores, points)]
        else:
            dets = [self._result(*self.mtcnn.detect(Image.fromarray(a), landmarks=True)) for a in arrs]
        if require:
            for d, n in zip(dets, names):
                if not d.found:
                    raise NoFaceError(f"{n}: no face found by MTCNN")
        return dets
