"""Evaluation of StyleMask on reenactment pairs: real VoxCeleb videos with the real networks, and the face world's
held-out identities with the face-world networks, through the same scoring code (:func:`face_scores`).

Real videos (VoxCeleb protocol of the authors' sibling paper HyperReenact; StyleMask's own tables could not be
checked, see ../shared/papers/stylemask.md section 4):

* self-reenactment: per video, frame 0 is the source and every other frame a target (the ground truth is the
  target frame itself): CSIM to the source frame, LPIPS to the target frame, FID (reenacted vs target frames),
  pose distance (mean |yaw, pitch, roll| difference in degrees) and expression distance (mean |DECA exp| L1 over
  the 50 coefficients; plus the official normalised expression error when ranges are given).
* cross-reenactment: random pairs of different videos (``num_cross_pairs``, seeded); the source is the first
  frame of one, every frame of the other drives it: CSIM, pose and expression distances.

Videos are folders of frames (``root/<video>/*.png|jpg``) or video files (``root/*.mp4``); frames are aligned
as at inference (``align``). Every frame of every pair is scored; nothing is capped unless ``max_frames`` is set.

The face world (``--faceworld``; a model trained with ``face_models: faceworld``, ``configs/faceworld.yaml``):
``common.data.faceworld.ReenactmentPairs`` of held-out (test-split) identities, self (driver = another pose and
expression of the source identity) and cross (driver of another identity), each pair with the exact answer
``target = render(source identity, driver pose, driver expression)`` and its landmarks. Source and driver renders
are inverted by the face-world e4e and reenacted as real images are. Per pair, averaged over all pairs:

* ``psnr`` / ``ssim``: output vs the exact answer (``common.metrics.face.psnr_metric`` / ``ssim_metric``, [-1, 1]);
* ``nme`` / ``landmark_px``: the attribute expert's 68 landmarks of the output (``estimate_landmarks``) vs the
  exact answer's true landmarks, divided by its interocular (outer eye corner) distance / in pixels;
* ``id_cos``: identity-expert cosine of the output to the source render (as CSIM);
* ``pose_err``: mean |yaw, pitch, roll| difference (degrees) of the output to the driver, both by the attribute
  expert on the fixed face-world box (StyleMask's pose error);
* ``exp_err``: StyleMask's normalised expression error of the output to the driver (jaw and the 8 expression
  coefficients, min-max normalised by ``faceworld_expression_ranges``).

Methods on the same pairs: ``stylemask`` (one trained mask network per seed), ``copy_source`` (output = source),
``copy_driver`` (output = driver) and ``invert_truth`` (the generator's image of the e4e inversion of the exact
answer, with the same truncation as StyleMask's inputs: the best a method that edits the generator's codes can
do). Seed ``k`` evaluates the mask network trained with seed ``k`` on the pair set drawn with seed ``k``, so the
spread covers training and pair sampling.

JSON (``--out``), shared with HyperReenact's benchmark: ``{"project": "stylemask", "checkpoints": [paths],
"split": "test", "num_pairs": N, "rows": [row, ...]}``, one row per (seed, mode, method)::

    {"method": "stylemask" | "copy_source" | "copy_driver" | "invert_truth", "mode": "self" | "cross",
     "seed": int, "psnr": dB, "ssim": float, "nme": float, "landmark_px": pixels, "id_cos": float,
     "pose_err": degrees, "exp_err": float, "pairs": int}

Commands::

    python -m projects.stylemask.evaluate --faceworld --ckpt RUN0/checkpoints/last.ckpt RUN1/checkpoints/last.ckpt \
        [--num-pairs 200] [--out runs/faceworld_benchmark/stylemask.json]
    python -m projects.stylemask.evaluate --voxceleb data/voxceleb1_test --ckpt RUN/checkpoints/last.ckpt
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

FACEWORLD_METHODS = ("stylemask", "copy_source", "copy_driver", "invert_truth")
ROW_KEYS = ("psnr", "ssim", "nme", "landmark_px", "id_cos", "pose_err", "exp_err")


# ------------------------------------------------------------------------------------------ shared scoring
def to_size(images: Tensor, size: int) -> Tensor:
    """Images ``[B,3,H,W]`` at ``size`` (average pooling down, as the losses see them; bilinear up)."""
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    if images.shape[-1] < size:
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def reenact_images(module, source: Tensor | None, driver: Tensor, wplus_source: Tensor | None = None) -> Tensor:
    """StyleMask's outputs ``[B,3,S,S]`` in [-1, 1] for aligned images: source ``[B or 1,3,S,S]`` (or, with
    ``source=None``, its W+ ``wplus_source``) reenacted by each driver ``[B,3,S,S]``; both inverted as ``predict``
    inverts images."""
    if (source is None) == (wplus_source is None):
        raise ValueError("reenact_images needs exactly one of source / wplus_source")
    wp_s = module.to_wplus(source, "image") if wplus_source is None else wplus_source
    wp_t = module.to_wplus(driver, "image")
    img, _, _ = module.reenactor(wp_s.expand(driver.shape[0], -1, -1), wp_t)
    return to_size(img, driver.shape[-1]).clamp(-1, 1)


def reconstruct_images(module, images: Tensor) -> Tensor:
    """The generator's image of the inversion of ``images`` (same inversion and truncation as StyleMask's inputs)."""
    wplus = module.to_wplus(images, "image")
    return to_size(module.generator.synthesis(wplus, noise="const"), images.shape[-1]).clamp(-1, 1)


def face_scores(
    module, output: Tensor, driver: Tensor, source: Tensor | None = None, source_embedding: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-pair scores ``[B]`` of outputs ``[B,3,S,S]`` by ``module``'s face networks (ArcFace/DECA or the experts).

    ``csim``: identity cosine of the output to the source (``source`` images, or their ``source_embedding``
    ``[1 or B, D]``); ``pose``: mean |yaw, pitch, roll| difference (degrees) to the driver; ``expression``: mean
    |expression coefficient| difference to the driver; ``expression_official``: StyleMask's normalised expression
    error to the driver (when the module has expression ranges).
    """
    if (source is None) == (source_embedding is None):
        raise ValueError("face_scores needs exactly one of source / source_embedding")
    n = output.shape[0]
    images = [output, driver] if source is None else [output, driver, source]
    c, e = module._analyse(torch.cat(images))
    c_o, c_d = {k: v[:n] for k, v in c.items()}, {k: v[n : 2 * n] for k, v in c.items()}
    e_src = e[2 * n :] if source is not None else source_embedding.expand(n, -1)
    out = {
        "csim": cosine_similarity(e[:n], e_src),
        "pose": pose_error(c_o["angles"], c_d["angles"]),
        "expression": (c_o["exp"] - c_d["exp"]).abs().mean(dim=1),
    }
    if module.expression_ranges.numel():
        out["expression_official"] = expression_error(
            c_o["exp"], c_o["pose"][:, 3], c_d["exp"], c_d["pose"][:, 3], module.expression_ranges
        )
    return out


# ------------------------------------------------------------------------------------------ real videos
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
                    self._score(batch, str(drv_video), start, wp_s, e_src, metrics, mode)
                    start += len(batch)
                    batch = []
            if batch:
                self._score(batch, str(drv_video), start, wp_s, e_src, metrics, mode)
        out = {k: float(v.compute()) for k, v in metrics.items()}
        out["pairs_scored"] = int(metrics["csim"].count)
        if mode == "self" and self.fid is not None:
            out["fid"] = float(self.fid.compute())
            self.fid.reset()
        return out

    def _score(self, frames, name, start, wp_s, e_src, metrics, mode) -> None:
        tgt = self._prep(frames, name, start)
        img_r = reenact_images(self.module, None, tgt, wplus_source=wp_s)
        for k, v in face_scores(self.module, img_r, tgt, source_embedding=e_src).items():
            metrics[k].update(v)
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


# ------------------------------------------------------------------------------------------ the face world
def method_outputs(module, method: str, batch: dict[str, Tensor]) -> Tensor:
    """The output images ``[B,3,S,S]`` of one method of the face-world benchmark for a batch of pairs."""
    if method == "stylemask":
        return reenact_images(module, batch["source"], batch["driver"])
    if method == "copy_source":
        return batch["source"]
    if method == "copy_driver":
        return batch["driver"]
    if method == "invert_truth":
        return reconstruct_images(module, batch["target"])
    raise ValueError(f"unknown method {method!r}; choose from {FACEWORLD_METHODS}")


class FaceWorldScores:
    """Accumulates the face-world benchmark's metrics (see the module docstring) over batches of pairs."""

    def __init__(self) -> None:
        from common.metrics.face import psnr_metric, ssim_metric

        self.psnr, self.ssim = psnr_metric(), ssim_metric()
        self.means = {k: PairMean() for k in ("nme", "landmark_px", "id_cos", "pose_err", "exp_err")}

    def update(self, module, output: Tensor, batch: dict[str, Tensor]) -> None:
        from common.metrics.face import landmark_nme, landmark_pixel_error

        if not module.expression_ranges.numel():
            raise ValueError("the face-world benchmark needs expression ranges (face_models: faceworld sets them)")
        target = batch["target"]
        self.psnr.update(output, target)
        self.ssim.update(output, target)
        f = face_scores(module, output, batch["driver"], source=batch["source"])
        lm = module.faces.landmarks(output)
        self.means["nme"].update(landmark_nme(lm, batch["target_landmarks"]))
        self.means["landmark_px"].update(landmark_pixel_error(lm, batch["target_landmarks"]))
        self.means["id_cos"].update(f["csim"])
        self.means["pose_err"].update(f["pose"])
        self.means["exp_err"].update(f["expression_official"])

    def compute(self) -> dict[str, float]:
        out = {"psnr": float(self.psnr.compute()), "ssim": float(self.ssim.compute())}
        out.update({k: float(v.compute()) for k, v in self.means.items()})
        out["pairs"] = int(self.means["nme"].count)
        return out


@torch.no_grad()
def faceworld_rows(
    modules: dict[int, torch.nn.Module],
    modes: tuple[str, ...] = ("self", "cross"),
    methods: tuple[str, ...] = FACEWORLD_METHODS,
    num_pairs: int = 200,
    batch_size: int = 25,
    split: str = "test",
    log=print,
) -> list[dict]:
    """The face-world benchmark: one JSON row per (seed, mode, method) (schema in the module docstring).

    ``modules`` maps a seed to the StyleMask module trained with it (face-world networks); seed ``k``'s pairs are
    ``ReenactmentPairs(split, size, num_pairs, mode, seed=k)``, rendered once and shared by every method.
    """
    from torch.utils.data import DataLoader

    from common.data.faceworld import ReenactmentPairs

    rows = []
    for seed, module in modules.items():
        module.eval()
        if module.faces is None or module.faces.landmark_fn is None:
            raise ValueError(f"seed {seed}: not a face-world model (face_models must be 'faceworld')")
        size = int(module.generator.size)
        for mode in modes:
            pairs = ReenactmentPairs(split, size, num_pairs, mode, seed)
            batches = [{k: v.to(module.device) for k, v in b.items()} for b in DataLoader(pairs, batch_size=batch_size)]
            for method in methods:
                scores = FaceWorldScores()
                for batch in batches:
                    scores.update(module, method_outputs(module, method, batch), batch)
                row = {"method": method, "mode": mode, "seed": int(seed), **scores.compute()}
                rows.append(row)
                if log is not None:
                    log(format_rows([row], header=len(rows) == 1))
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds per (method, mode): ``<key>`` (mean), ``<key>_std`` (sample standard deviation
    over seeds, 0 for one seed) and ``seeds`` (how many)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["mode"]), []).append(r)
    out = []
    for (method, mode), rs in groups.items():
        item: dict = {"method": method, "mode": mode, "seeds": len(rs)}
        for k in ROW_KEYS:
            v = np.array([float(r[k]) for r in rs])
            item[k] = float(v.mean())
            item[f"{k}_std"] = float(v.std(ddof=1)) if len(rs) > 1 else 0.0
        out.append(item)
    return out


def format_rows(rows: list[dict], header: bool = True) -> str:
    """Plain-text table of benchmark rows, or of :func:`summarize` items (printed as mean +- std)."""
    lines = [f"{'method':14s}{'mode':>6s}{'seed':>6s}" + "".join(f"{k:>17s}" for k in ROW_KEYS)] if header else []
    for r in rows:
        seed = f"n={r['seeds']}" if "seeds" in r else str(r["seed"])
        cells = [f"{r[k]:.4f}+-{r[k + '_std']:.4f}" if f"{k}_std" in r else f"{r[k]:.4f}" for k in ROW_KEYS]
        lines.append(f"{r['method']:14s}{r['mode']:>6s}{seed:>6s}" + "".join(f"{c:>17s}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict] | dict:
    """``--faceworld`` (the face-world benchmark) or ``--voxceleb DIR`` (real videos) for trained models."""
    import argparse
    import json

    from projects.stylemask.faceworld import load_trained

    p = argparse.ArgumentParser(description="StyleMask evaluation: the face-world benchmark or VoxCeleb videos")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--faceworld", action="store_true", help="held-out face-world identities, with baselines")
    what.add_argument("--voxceleb", default=None, help="folder of VoxCeleb test videos or frame folders")
    p.add_argument(
        "--ckpt",
        nargs="+",
        default=None,
        help="trained models (last.ckpt of main.py fit, or an exported file), one per training seed; default: the "
        "shipped faceworld_stylemask",
    )
    p.add_argument("--modes", default="self,cross")
    p.add_argument("--methods", default=",".join(FACEWORLD_METHODS))
    p.add_argument("--num-pairs", type=int, default=200, help="face-world pairs per mode and seed")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--num-cross-pairs", type=int, default=35, help="VoxCeleb cross-reenactment video pairs")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    if a.voxceleb:
        if not a.ckpt or len(a.ckpt) != 1:
            raise ValueError("--voxceleb takes one --ckpt")
        res = evaluate_voxceleb(load_trained(a.ckpt[0]), a.voxceleb, a.num_cross_pairs)
        print(json.dumps(res, indent=2))
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(res, indent=2))
        return res
    ckpts = a.ckpt or [None]
    modules = {}
    for c in ckpts:
        m = load_trained(c)
        seed = int(m.hparams.seed)
        if seed in modules:
            raise ValueError(f"{c}: a second model trained with seed {seed}; give one model per training seed")
        modules[seed] = m
    if len(modules) < 2:
        print("[stylemask] one model: no spread over seeds (train more seeds and pass them all to --ckpt)")
    rows = faceworld_rows(modules, tuple(a.modes.split(",")), tuple(a.methods.split(",")), a.num_pairs, a.batch_size)
    print("\nmean +- std over seeds (held-out face-world identities)")
    print(format_rows(summarize(rows)))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "project": "stylemask",
            "checkpoints": [str(c) if c else "faceworld_stylemask (shipped)" for c in ckpts],
            "split": "test",
            "num_pairs": a.num_pairs,
            "rows": rows,
        }
        Path(a.out).write_text(json.dumps(doc, indent=2))
        print(f"rows -> {a.out}")
    return rows


if __name__ == "__main__":
    main()
