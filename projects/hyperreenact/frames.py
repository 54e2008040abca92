"""Frame helpers every other HyperReenact module uses: image <-> tensor conversion, the face crop of a frame
(HyperReenact's landmark-box crop), driving inputs (video, folder or image), source | driving | output grids, the
predict-time dataset, and the fixed landmarks and box of already-aligned frames.

This module imports nothing from the rest of the project, and every project import is at module level, so the
imports run one way (a test checks it)::

    frames, hypernet, loss, pretrained  <-  model  <-  faceworld  <-  data, module  <-  main, inference, export
    <-  evaluate  <-  demo, reproduce;  preprocess <- frames, pretrained
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import IterableDataset

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CROP_MODES = ("detect", "aligned", "fixed", "landmarks")


def default_lm5(size: int) -> np.ndarray:
    """Five points of a centred face (ArcFace template placed in the middle 7/8 of the crop), ``[5, 2]`` pixels."""
    tpl = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32)
    return tpl / 112.0 * size


def default_box(size: int) -> np.ndarray:
    """A face box covering the central 70% of the crop (left, top, right, bottom), ``[4]`` pixels."""
    return np.array([0.15 * size, 0.15 * size, 0.85 * size, 0.85 * size], np.float32)


def to_tensor(image: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_uint8(images: Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def grid_image(source: np.ndarray, driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Source | driving | reenacted side by side, uint8 [S, 3S, 3]."""
    return np.concatenate([source, driving, output], axis=1)


@dataclass
class Face:
    """A cropped face: ``image`` uint8 [S, S, 3], ``lm5`` [5, 2] and ``box`` [4] in crop pixels."""

    image: np.ndarray
    lm5: np.ndarray
    box: np.ndarray


class FaceCropper:
    """Frame -> :class:`Face`.

    mode ``"detect"``: MTCNN on the frame, HyperReenact's landmark-box crop (from the face box corners) to
    ``size``; the five points and box are carried into crop pixels. ``"aligned"``: the frame is already a crop
    (resized to ``size``), only the second detection runs. ``"fixed"``: already a crop, fixed centred
    landmarks and box (synthetic frames, which have no detectable face). ``"landmarks"``: already aligned as the
    model's domain (the face world), resized to ``size``; ``landmarker(images [1,3,S,S] in [-1,1]) -> [1,68,2]``
    (the face-world model's ``net.landmarker``) gives the five points and the landmark box.
    """

    def __init__(
        self,
        size: int = 256,
        mode: str = "detect",
        device: str = "cpu",
        landmarker: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if mode not in CROP_MODES:
            raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
        if mode == "landmarks" and landmarker is None:
            raise ValueError("crop mode 'landmarks' needs a landmark estimator (a face-world model's net.landmarker)")
        self.size, self.mode, self.landmarker = size, mode, landmarker
        self.detector = None
        if mode in ("detect", "aligned"):
            from common.face.detect import FaceDetector

            self.detector = FaceDetector(device=device)

    def __call__(self, frame: np.ndarray, name: str) -> Face:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{name}: expected an RGB uint8 frame [H,W,3], got {frame.dtype} {frame.shape}")
        if self.mode == "detect":
            from common.face.align import landmark_box, landmark_box_crop

            det = self.detector.detect(frame, require=True, source=name)
            corners = det.box.reshape(2, 2)
            crop = landmark_box_crop(frame, corners, self.size)
            # the crop's square, to carry the frame's five points and box into crop pixels
            x1, y1, x2, _ = landmark_box(corners)
            k = self.size / (x2 - x1)
            origin = np.array([x1, y1], np.float64)
            lm5 = (det.landmarks5 - origin + 0.5) * k - 0.5  # pixel centres at integers (the resize's convention)
            box = ((det.box.reshape(2, 2) - origin + 0.5) * k - 0.5).reshape(4)
            return Face(crop, lm5.astype(np.float32), box.astype(np.float32))
        crop = frame
        if crop.shape[:2] != (self.size, self.size):
            crop = np.asarray(Image.fromarray(crop).resize((self.size, self.size), Image.BICUBIC))
        if self.mode == "fixed":
            return Face(crop, default_lm5(self.size), default_box(self.size))
        if self.mode == "landmarks":
            from common.face.align import lm68_to_lm5

            with torch.no_grad():
                lm68 = self.landmarker(to_tensor(crop)[None])[0].cpu()
            box = torch.cat([lm68.min(0).values, lm68.max(0).values])
            return Face(crop, lm68_to_lm5(lm68).numpy().astype(np.float32), box.numpy().astype(np.float32))
        det = self.detector.detect(crop, require=True, source=f"{name} (cropped)")
        return Face(crop, det.landmarks5.astype(np.float32), det.box.astype(np.float32))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file (errors name the file)."""
    from common.face.detect import load_rgb

    return load_rgb(path)


def open_driving(path: str | os.PathLike) -> tuple[Iterator[tuple[str, np.ndarray]], int, float | None]:
    """(iterator of (name, RGB uint8 frame), number of frames, fps or None) of a video, image folder or image."""
    from common.data.video import iter_video, video_info

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in the driving folder")
        return ((str(f), read_image(f)) for f in files), len(files), None
    if not p.is_file():
        raise FileNotFoundError(f"driving input not found: {p}")
    if p.suffix.lower() in VIDEO_SUFFIXES:
        n, fps, _ = video_info(p)
        return ((f"{p}#frame{i}", fr) for i, fr in enumerate(iter_video(p))), n, fps
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return iter([(str(p), read_image(p))]), 1, None
    raise ValueError(f"{p}: driving input must be a video ({VIDEO_SUFFIXES}), an image or a folder of images")


class DrivingFrames(IterableDataset):
    """Predict-time items for ``main.py predict``: the cropped source (the model inverts it) and each cropped
    driving frame (``target``, ``target_box``), with ``index``."""

    def __init__(self, source: str, driving: str, size: int, crop: str = "detect") -> None:
        self.source, self.driving, self.size, self.crop = source, driving, size, crop
        _, self.num_frames, self.fps = open_driving(driving)

    def __iter__(self):
        cropper = FaceCropper(self.size, self.crop)
        src = cropper(read_image(self.source), self.source)
        src_t = to_tensor(src.image)
        frames, _, _ = open_driving(self.driving)
        for i, (name, fr) in enumerate(frames):
            face = cropper(fr, name)
            yield {
                "source": src_t,
                "source_lm5": torch.from_numpy(src.lm5),
                "target": to_tensor(face.image),
                "target_box": torch.from_numpy(face.box),
                "index": torch.tensor(i),
            }
