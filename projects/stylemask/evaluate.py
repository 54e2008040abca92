"""Real-video evaluation of StyleMask (VoxCeleb protocol of the authors' sibling paper HyperReenact; StyleMask's
own tables could not be checked, see ../shared/papers/stylemask.md section 4).

* self-reenactment: per video, frame 0 is the source and every other frame a target (the ground truth is the
  target frame itself): CSIM to the source frame, LPIPS to the target frame, FID (reenacted vs target frames),
  pose distance (mean |yaw, pitch, roll| difference in degrees) and expression distance (mean |DECA exp| L1 over
  the 50 coefficients; plus the official normalised expression error when ranges are given).
* cross-reenactment: random pairs of different videos (``num_cross_pairs``, seeded); the source is the first
  frame of one, every frame of the other drives it: CSIM, pose and expression distances.

Videos are folders of frames (``root/<video>/*.png|jpg``) or video files (``root/*.mp4``); frames are aligned
as at inference (``align``). Every frame of every pair is scored; nothing is capped unless ``max_frames`` is set.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from projects.stylemask.data import IMAGE_EXTS, VIDEO_EXTS, FaceAligner, _load_rgb
from projects.stylemask.loss import cosine_similarity
from projects.stylemask.metrics import PairMean, expression_error, pose_error


def list_videos(root: str | Path) -> list[Path]:
    """Video files and frame folders under ``root`` (sorted); raises when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VoxCeleb folder not found: {root}")
    vids = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            vids.append(p)
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir()):
            vids.append(p)
    if not vids:
        raise ValueError(f"{root}: no video files ({sorted(VIDEO_EXTS)}) or frame folders found")
    return vids


def iter_frames(video: Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file or a folder of frame images, in order."""
    if video.is_dir():
        for p in sorted(q for q in video.iterdir() if q.suffix.lower() in IMAGE_EXTS):
            yield _load_rgb(p)
    else:
        from common.data.video import iter_video

        yield from iter_video(video)


def cross_pairs(videos: list[Path], num_pairs: int, seed: int = 0) -> list[tuple[Path, Path]]:
    """``num_pairs`` random (source, driving) pairs of different videos, seeded."""
    if len(videos) < 2:
        raise ValueError("cross-reenactment needs at least two videos")
    rng = random.Random(seed)
    out = []
    for _ in range(num_pairs):
        a, b = rng.sample(range(len(videos)), 2)
        out.append((videos[a], videos[b]))
    return out


class ReenactmentEvaluator:
    """Scores reenactments of real frames with a trained ``StyleMaskModule`` (its face networks and inverter).

    ``lpips``: callable ``(x, y) -> [B]`` on [-1,1] images (self-reenactment only); ``fid``: an object with
    ``update(images, real: bool)`` and ``compute()`` (e.g. ``common.metrics.face.FID``); both optional.
    """

    def __init__(
        self,
        module,
        align: str = "ffhq",
        input_size: int = 256,
        batch_size: int = 8,
        lpips=None,
        fid=None,
        max_frames: int | None = None,
    ) -> None:
        self.module = module.eval()
        self.aligner = FaceAligner(align, input_size)
        self.batch_size, self.lpips, self.fid, self.max_frames = batch_size, lpips, fid, max_frames

    def _prep(self, frames: list[np.ndarray], name: str, start: int) -> Tensor:
        return torch.stack([self.aligner(f, f"{name} frame {start + i}") for i, f in enumerate(frames)]).to(
            self.module.device
        )

    def _view(self, images: Tensor, size: int) -> Tensor:
        return F.adaptive_avg_pool2d(images, size) if images.shape[-1] != size else images

    @torch.no_grad()
    def run(self, pairs: list[tuple[Path, Path]], mode: str) -> dict[str, float]:
        """Evaluate (source video, driving video) pairs; ``mode`` "self" skips the source frame as a target."""
        if mode not in ("self", "cross"):
            raise ValueError(f"mode must be 'self' or 'cross', got {mode!r}")
        m = self.module
        metrics = {k: PairMean() for k in ("csim", "pose", "expression")}
        if m.expression_ranges.numel():
            metrics["expression_official"] = PairMean()
        if mode == "self" and self.lpips is not None:
            metrics["lpips"] = PairMean()
        for src_video, drv_video in pairs:
            first = next(iter_frames(src_video), None)
            if first is None:
                raise ValueError(f"{src_video}: no frames")
            src = self._prep([first], str(src_video), 0)
            size = src.shape[-1]
            wp_s = m.to_wplus(src, "image")
            e_src = m.faces.embed(src)
            batch: list[np.ndarray] = []
            start = 0
            for i, frame in enumerate(iter_frames(drv_video)):
                if mode == "self" and i == 0:
                    start = 1
                    continue
                if self.max_frames is not None and i >= self.max_frames:
                    break
                batch.append(frame)
                if len(batch) == self.batch_size:
                    self._score(batch, str(drv_video), start, wp_s, e_src, size, metrics, mode)
                    start += len(batch)
                    batch = []
            if batch:
                self._score(batch, str(drv_video), start, wp_s, e_src, size, metrics, mode)
        out = {k: float(v.compute()) for k, v in metrics.items()}
        out["pairs_scored"] = int(metrics["csim"].count)
        if mode == "self" and self.fid is not None:
            out["fid"] = float(self.fid.compute())
            self.fid.reset()
        return out

    def _score(self, frames, name, start, wp_s, e_src, size, metrics, mode) -> None:
        m = self.module
        tgt = self._prep(frames, name, start)
        wp_t = m.to_wplus(tgt, "image")
        img_r, _, _ = m.reenactor(wp_s.expand(len(frames), -1, -1), wp_t)
        img_r = self._view(img_r, size).clamp(-1, 1)
        c, e = m._analyse(torch.cat([img_r, tgt]))
        n = len(frames)
        c_r, c_t = {k: v[:n] for k, v in c.items()}, {k: v[n:] for k, v in c.items()}
        metrics["csim"].update(cosine_similarity(e[:n], e_src.expand(n, -1)))
        metrics["pose"].update(pose_error(c_r["angles"], c_t["angles"]))
        metrics["expression"].update((c_r["exp"] - c_t["exp"]).abs().mean(dim=1))
        if "expression_official" in metrics:
            metrics["expression_official"].update(
                expression_error(c_r["exp"], c_r["pose"][:, 3], c_t["exp"], c_t["pose"][:, 3], m.expression_ranges)
            )
        if mode == "self":
            if "lpips" in metrics:
                metrics["lpips"].update(self.lpips(img_r, tgt).flatten())
            if self.fid is not None:
                self.fid.update(tgt, real=True)
                self.fid.update(img_r, real=False)


def evaluate_voxceleb(module, root: str | Path, num_cross_pairs: int = 35, seed: int = 0, **kwargs) -> dict:
    """Self- and cross-reenactment scores on the videos under ``root``: ``{'self': {...}, 'cross': {...}}``."""
    videos = list_videos(root)
    ev = ReenactmentEvaluator(module, **kwargs)
    results = {"self": ev.run([(v, v) for v in videos], "self")}
    if len(videos) >= 2 and num_cross_pairs > 0:
        results["cross"] = ev.run(cross_pairs(videos, num_cross_pairs, seed), "cross")
    return results
