"""Expression probabilities for video files or frame folders, from our checkpoint or the authors' released one.

    python -m projects.dferclip.predict --ckpt runs/dferclip/dfew/version_0/checkpoints/last.ckpt clip.mp4 frames/
    python -m projects.dferclip.predict --official pretrained/dferclip/dfew_set1_model_best.pth clip.mp4

Each input gives 16 frames at the test-time segment centres; in each the face is detected (MTCNN) and cropped,
as the datasets hold face crops (``--no-detect`` for inputs that already are face crops). Prints one line per
input and returns the list of ``{"input", "probs", "pred"}``.

Over time (``--window SECONDS [--stride SECONDS]``, video files): the video is cut into windows of that length
(DFEW clips last about 2 to 5 s), each sampled as a clip, giving one probability vector per window; see
``predict_over_time``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from projects.dferclip.data import RawVideoDataset, face_crop, frames_to_tensor, sample_indices
from projects.dferclip.model import DFERCLIP
from projects.dferclip.module import DFERCLIPModule, format_prediction
from projects.dferclip.text import class_names


def load_model(ckpt: str | None = None, official: str | None = None) -> tuple[DFERCLIP, int, int]:
    """(network in eval mode, frames per clip, image size) from a Lightning checkpoint or an official ``.pth``."""
    if (ckpt is None) == (official is None):
        raise ValueError("give exactly one of ckpt (our Lightning checkpoint) and official (the authors' .pth)")
    if official is not None:
        from projects.dferclip.checkpoint import load_official_checkpoint

        model, arch = load_official_checkpoint(official)
        return model.eval(), arch["num_frames"], arch["clip"]["image_size"]
    module = DFERCLIPModule.load_from_checkpoint(ckpt, map_location="cpu")
    size = module.model.image_encoder.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    return module.model.eval(), module.hparams.num_frames, int(size)


def checkpoint_normalize(ckpt: str | Path) -> bool:
    """Whether the data of a Lightning checkpoint's run applied CLIP mean/std (``data.normalize``; False when not
    saved, as for the official models)."""
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    return bool((saved.get("datamodule_hyper_parameters") or {}).get("normalize", False))


@torch.no_grad()
def predict(
    model: DFERCLIP,
    inputs: list[str | Path],
    num_frames: int = 16,
    image_size: int = 224,
    detect_faces: bool = True,
    normalize: bool = False,
    device: str = "cpu",
    echo: bool = True,
) -> list[dict[str, Any]]:
    """Probabilities over the model's classes for each input (video file or frame folder)."""
    ds = RawVideoDataset(inputs, num_frames, image_size, detect_faces, normalize=normalize, device=device)
    names = class_names(model.prompt_learner.n_cls)
    model = model.to(device)
    out = []
    for i in range(len(ds)):
        video = ds[i][0].unsqueeze(0).to(device)
        probs = model(video).float().softmax(-1)[0].cpu()
        out.append(format_prediction(str(ds.paths[i]), probs, names, echo=echo))
    return out


@dataclass
class Timeline:
    """Class probabilities over a video: ``probs [W, C]`` for W windows (rows sum to one), ``times [W]`` the
    window centres in seconds, ``windows`` their ``[start, end)`` frames, ``seen`` the frame indices each window
    gave the model and ``crops`` those frames as the model saw them (face crops, ``image_size`` px)."""

    classes: list[str]
    probs: Tensor
    times: list[float]
    windows: list[tuple[int, int]]
    seen: list[list[int]]
    crops: dict[int, Image.Image]
    fps: float
    num_frames: int


def time_windows(num_frames: int, length: int, stride: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of ``length`` frames every ``stride`` frames, the last one ending at the video's
    end; one window over the whole video when it is shorter than ``length``."""
    if num_frames < 1 or length < 1 or stride < 1:
        raise ValueError(f"need positive frame count, length and stride, got {num_frames}, {length}, {stride}")
    if num_frames <= length:
        return [(0, num_frames)]
    out = [(s, s + length) for s in range(0, num_frames - length + 1, stride)]
    if out[-1][1] < num_frames:
        out.append((num_frames - length, num_frames))
    return out


@torch.no_grad()
def predict_over_time(
    model: DFERCLIP,
    video: str | Path,
    num_frames: int = 16,
    image_size: int = 224,
    window: float = 2.0,
    stride: float = 1.0,
    detect_faces: bool = True,
    normalize: bool = False,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Timeline:
    """Probabilities per time window of a video file (windows of ``window`` s every ``stride`` s).

    Each window is sampled as ``predict`` samples a whole input (``num_frames`` at the test-time segment centres)
    and cropped the same way (MTCNN face box; a frame without a face raises ``NoFaceError`` naming it). Frames
    are decoded once, streamed, and each needed frame is detected once. ``progress(done, total)`` counts frames
    prepared, then windows predicted.
    """
    from common.data.video import iter_video, video_info

    path = Path(video)
    n = sum(1 for _ in iter_video(path))
    if n == 0:
        raise ValueError(f"video {path}: no decodable frames")
    fps = video_info(path)[1]
    length, step = max(1, round(window * fps)), max(1, round(stride * fps))
    windows = time_windows(n, length, step)
    seen = [[s + i for i in sample_indices(e - s, num_frames, train=False)] for s, e in windows]
    wanted = {i for idx in seen for i in idx}
    total = len(wanted) + len(windows)
    detector = None
    if detect_faces:
        from common.face.detect import FaceDetector

        detector = FaceDetector(device=device)
    crops: dict[int, Image.Image] = {}
    for i, frame in enumerate(iter_video(path)):
        if i in wanted:
            crops[i] = face_crop(frame, detector, f"video {path}, frame {i}", image_size)
            if progress is not None:
                progress(len(crops), total)
        if len(crops) == len(wanted):
            break
    names = class_names(model.prompt_learner.n_cls)
    model = model.to(device)
    probs = []
    for k, idx in enumerate(seen):
        clip = frames_to_tensor([np.asarray(crops[i]) for i in idx], normalize).unsqueeze(0).to(device)
        probs.append(model(clip).float().softmax(-1)[0].cpu())
        if progress is not None:
            progress(len(wanted) + k + 1, total)
    times = [(s + e) / 2 / fps for s, e in windows]
    return Timeline(names, torch.stack(probs), times, windows, seen, crops, fps, n)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ckpt", help="our Lightning checkpoint (.ckpt)")
    g.add_argument("--official", help="the authors' released checkpoint (.pth)")
    p.add_argument("inputs", nargs="+", help="video files and/or frame folders")
    p.add_argument("--no-detect", action="store_true", help="inputs are face crops already")
    p.add_argument("--normalize", action="store_true", help="apply CLIP mean/std (the official models were not)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--window", type=float, help="seconds: probabilities per window of each video (over time)")
    p.add_argument("--stride", type=float, default=1.0, help="seconds between window starts (with --window)")
    args = p.parse_args(argv)
    model, t, size = load_model(args.ckpt, args.official)
    if args.window:
        res = []
        for path in args.inputs:
            tl = predict_over_time(
                model, path, t, size, args.window, args.stride, not args.no_detect, args.normalize, args.device
            )
            for (s, e), sec, pr in zip(tl.windows, tl.times, tl.probs):
                res.append(format_prediction(f"{path} [{sec:.2f} s, frames {s}-{e - 1}]", pr, tl.classes))
                res[-1]["time"] = sec
    else:
        res = predict(model, args.inputs, t, size, not args.no_detect, args.normalize, args.device)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
