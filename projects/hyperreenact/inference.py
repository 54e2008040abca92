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

# The frame helpers live in frames.py (one home, imports one way); they stay importable from here.
from projects.hyperreenact.frames import (
    CROP_MODES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    DrivingFrames,
    Face,
    FaceCropper,
    default_box,
    default_lm5,
    grid_image,
    open_driving,
    read_image,
    to_tensor,
    to_uint8,
)
from projects.hyperreenact.module import HyperReenactModule, load_module

__all__ = [
    "CROP_MODES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DrivingFrames",
    "Face",
    "FaceCropper",
    "ReenactResult",
    "build_net",
    "default_box",
    "default_lm5",
    "grid_image",
    "main",
    "open_driving",
    "read_image",
    "reenact",
    "to_tensor",
    "to_uint8",
]


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
    ``crop="landmarks"`` is the face world's (frames already aligned, landmarks from ``net.landmarker``).
    """
    from common.data.video import write_video
    from common.face.detect import load_rgb

    net = net.to(device).eval()
    size = net.generator.size
    cropper = FaceCropper(size, crop, device=str(device), landmarker=getattr(net, "landmarker", None))
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


def build_net(checkpoint: str | None = None, hypernet: str | None = None, map_location: str = "cpu") -> torch.nn.Module:
    """The network from a training checkpoint (or the shipped face-world file), or the released weights (registry
    paths) + ``hypernetwork.pt``."""
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
