"""Reenactment of a source image by a driving image, folder or video, on CPU or GPU.

Unlike the official ``run_inference.py`` there is no frame cap and the video keeps the driving frame rate.
Every frame is cropped as the official code does it (HyperReenact's landmark-box crop to 256 px; here from
the MTCNN face box, since the official 68-point SFD+FAN detector is not used), its five points and box are
measured on the crop, the source is inverted once, and each driving frame only feeds the pose encoder.

Command line (no ``make`` needed)::

    python -m projects.hyperreenact.inference --source SRC.png --driving VIDEO.mp4|DIR|IMG --out OUT \\
        [--checkpoint last.ckpt | --hypernet hypernetwork.pt] [--grids] [--no-frames] [--no-video] [--device cuda]
"""

from __future__ import annotations

import argparse
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
CROP_MODES = ("detect", "aligned", "fixed")


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
    landmarks and box (synthetic frames of the demo, which have no detectable face).
    """

    def __init__(self, size: int = 256, mode: str = "detect", device: str = "cpu") -> None:
        if mode not in CROP_MODES:
            raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
        self.size, self.mode = size, mode
        self.detector = None
        if mode != "fixed":
            from common.face.detect import FaceDetector

            self.detector = FaceDetector(device=device)

    def __call__(self, frame: np.ndarray, name: str) -> Face:
        from projects.hyperreenact.data import default_box, default_lm5

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
        det = self.detector.detect(crop, require=True, source=f"{name} (cropped)")
        return Face(crop, det.landmarks5.astype(np.float32), det.box.astype(np.float32))


def to_tensor(image: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_uint8(images: Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3]."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def open_driving(path: str | os.PathLike) -> tuple[Iterator[tuple[str, np.ndarray]], int, float | None]:
    """(iterator of (name, RGB uint8 frame), number of frames, fps or None) of a video, image folder or image."""
    from common.data.video import iter_video, video_info

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in the driving folder")
        return ((str(f), _read_image(f)) for f in files), len(files), None
    if not p.is_file():
        raise FileNotFoundError(f"driving input not found: {p}")
    if p.suffix.lower() in VIDEO_SUFFIXES:
        n, fps, _ = video_info(p)
        return ((f"{p}#frame{i}", fr) for i, fr in enumerate(iter_video(p))), n, fps
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return iter([(str(p), _read_image(p))]), 1, None
    raise ValueError(f"{p}: driving input must be a video ({VIDEO_SUFFIXES}), an image or a folder of images")


def _read_image(path: Path) -> np.ndarray:
    from common.face.detect import load_rgb

    return load_rgb(path)


def grid_image(source: np.ndarray, driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Source | driving | reenacted side by side, uint8 [S, 3S, 3]."""
    return np.concatenate([source, driving, output], axis=1)


@dataclass
class ReenactResult:
    """What :func:`reenact` wrote."""

    frames: int
    fps: float
    out_dir: Path
    video: Path | None


@torch.no_grad()
def reenact(
    net: torch.nn.Module,
    source: str | os.PathLike,
    driving: str | os.PathLike,
    out_dir: str | os.PathLike,
    crop: str = "detect",
    save_frames: bool = True,
    save_grids: bool = False,
    save_video: bool = True,
    batch_size: int = 8,
    fps: float | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> ReenactResult:
    """Reenact ``source`` with every frame of ``driving``; writes ``frames/%06d.png``, ``grids/%06d.png`` and
    ``reenacted.mp4`` (at the driving video's frame rate; ``fps`` or 25 for images) under ``out_dir``.

    ``net`` is a :class:`~projects.hyperreenact.model.HyperReenactor` with an inverter. ``progress(done, total)``
    is called after each batch of frames. A driving frame without a face raises ``NoFaceError`` naming it.
    """
    from common.data.video import write_video
    from common.face.detect import load_rgb

    net = net.to(device).eval()
    size = net.generator.size
    cropper = FaceCropper(size, crop, device=str(device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = cropper(load_rgb(source), str(source))
    src_t = to_tensor(src.image).unsqueeze(0).to(device)
    w = net.invert(src_t)
    _, f_app = net.app_encoder(src_t, torch.from_numpy(src.lm5).unsqueeze(0).to(device))
    frames, n, video_fps = open_driving(driving)
    rate = float(fps or video_fps or 25.0)

    def batches() -> Iterator[list[tuple[str, np.ndarray]]]:
        buf: list[tuple[str, np.ndarray]] = []
        for item in frames:
            buf.append(item)
            if len(buf) == batch_size:
                yield buf
                buf = []
        if buf:
            yield buf

    counter = {"n": 0}

    def outputs() -> Iterator[np.ndarray]:
        for chunk in batches():
            faces = [cropper(fr, name) for name, fr in chunk]
            tgt = torch.stack([to_tensor(f.image) for f in faces]).to(device)
            boxes = torch.from_numpy(np.stack([f.box for f in faces])).to(device)
            _, f_pose = net.pose_encoder(tgt, boxes)
            b = len(faces)
            img, _ = net.render(w.expand(b, -1, -1), f_pose, f_app.expand(b, -1, -1, -1))
            for face, arr in zip(faces, to_uint8(img)):
                i = counter["n"]
                if save_frames:
                    (out / "frames").mkdir(exist_ok=True)
                    Image.fromarray(arr).save(out / "frames" / f"{i:06d}.png")
                if save_grids:
                    (out / "grids").mkdir(exist_ok=True)
                    Image.fromarray(grid_image(src.image, face.image, arr)).save(out / "grids" / f"{i:06d}.png")
                counter["n"] += 1
                yield arr
            if progress is not None:
                progress(counter["n"], n)

    video = None
    if save_video:
        video = out / "reenacted.mp4"
        write_video(video, outputs(), rate)
    else:
        for _ in outputs():
            pass
    if counter["n"] != n:
        raise RuntimeError(f"{driving}: expected {n} frames, reenacted {counter['n']}")
    return ReenactResult(counter["n"], rate, out, video)


class DrivingFrames(IterableDataset):
    """Predict-time items for ``main.py predict``: the cropped source (with its W+ from the model's inverter)
    and each cropped driving frame (``target``, ``target_box``), with ``index``."""

    def __init__(self, source: str, driving: str, size: int, crop: str = "detect") -> None:
        self.source, self.driving, self.size, self.crop = source, driving, size, crop
        _, self.num_frames, self.fps = open_driving(driving)

    def __iter__(self):
        from common.face.detect import load_rgb

        cropper = FaceCropper(self.size, self.crop)
        src = cropper(load_rgb(self.source), self.source)
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


def build_net(checkpoint: str | None = None, hypernet: str | None = None, map_location: str = "cpu") -> torch.nn.Module:
    """The network from a training checkpoint, or the released weights (registry paths) + ``hypernetwork.pt``."""
    from projects.hyperreenact.module import HyperReenactModule, load_module

    if checkpoint is not None:
        return load_module(checkpoint, map_location).net
    from common.weights import resolve

    module = HyperReenactModule(
        encoders="pretrained", training_parts=False, hypernet_path=str(resolve("hyperreenact_hypernetwork", hypernet))
    )
    return module.net


def main(argv: list[str] | None = None) -> ReenactResult:
    parser = argparse.ArgumentParser(description="HyperReenact: reenact a source face with driving frames")
    parser.add_argument("--source", required=True, help="source image (.png/.jpg)")
    parser.add_argument("--driving", required=True, help="driving video, image, or folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", default=None, help="a training checkpoint (.ckpt); default: released weights")
    parser.add_argument("--hypernet", default=None, help="path of the released hypernetwork.pt (default: registry)")
    parser.add_argument("--crop", default="detect", choices=CROP_MODES)
    parser.add_argument("--grids", action="store_true", help="also save source|driving|reenacted grids")
    parser.add_argument("--no-frames", action="store_true", help="do not save the reenacted frames")
    parser.add_argument("--no-video", action="store_true", help="do not write reenacted.mp4")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: the driving video's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = parser.parse_args(argv)
    net = build_net(a.checkpoint, a.hypernet)
    res = reenact(
        net,
        a.source,
        a.driving,
        a.out,
        crop=a.crop,
        save_frames=not a.no_frames,
        save_grids=a.grids,
        save_video=not a.no_video,
        batch_size=a.batch_size,
        fps=a.fps,
        device=a.device,
    )
    print(
        f"[hyperreenact] {res.frames} frames at {res.fps:g} fps -> {res.out_dir}"
        + (f" ({res.video})" if res.video else "")
    )
    return res


if __name__ == "__main__":
    main()
