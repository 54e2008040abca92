"""VoxCeleb1 frames for HyperReenact: the pre-cropped folder format, training pairs, evaluation pairs, and a
synthetic stand-in with the same format (rendered by a tiny random generator) for the demo and tests.

Folder format (written by ``python -m projects.hyperreenact.preprocess``)::

    <root>/<split>/<identity>/<video>/frames/000000.png ...   256x256 RGB crops, 1 frame per second
    <root>/<split>/<identity>/<video>/meta.npz               lm5 [T,5,2], boxes [T,4] (crop pixels),
                                                             latents [T,n_latent,512] (e4e codes, optional)

``split`` is ``train`` or ``test`` (VoxCeleb1's official dev/test identities). Frames are listed in name order
and ``meta.npz`` rows follow that order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from projects.hyperreenact.faceworld import FaceWorldEvaluationPairs, FaceWorldTrainingPairs
from projects.hyperreenact.frames import DrivingFrames, default_box, default_lm5
from projects.hyperreenact.model import build_tiny_generator, mean_latent

__all__ = [
    "EpochSampler",
    "EvaluationPairs",
    "ReenactmentPairs",
    "Video",
    "VoxCelebDataModule",
    "default_box",
    "default_lm5",
    "load_frame",
    "scan_split",
    "write_synthetic_vox",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Video:
    """One pre-cropped video: its identity, frame files and per-frame annotations."""

    identity: str
    name: str
    frames: list[Path]
    lm5: np.ndarray  # [T, 5, 2]
    boxes: np.ndarray  # [T, 4]
    latents: np.ndarray | None  # [T, L, D]


def scan_split(root: str | os.PathLike, split: str) -> list[Video]:
    """Read every ``<identity>/<video>`` of ``root/split``; errors name the file and the problem."""
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such folder (expected <root>/{split}/<identity>/<video>/frames)")
    videos: list[Video] = []
    for id_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for vid_dir in sorted(p for p in id_dir.iterdir() if p.is_dir()):
            frames = sorted(p for p in (vid_dir / "frames").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            meta_path = vid_dir / "meta.npz"
            if not frames:
                raise ValueError(f"{vid_dir / 'frames'}: no frames")
            if not meta_path.is_file():
                raise FileNotFoundError(f"{meta_path}: missing (landmarks and boxes of the frames)")
            with np.load(meta_path) as meta:
                for key in ("lm5", "boxes"):
                    if key not in meta:
                        raise ValueError(f"{meta_path}: no array {key!r} (has {sorted(meta.files)})")
                lm5, boxes = meta["lm5"].astype(np.float32), meta["boxes"].astype(np.float32)
                latents = meta["latents"].astype(np.float32) if "latents" in meta else None
            n = len(frames)
            if lm5.shape != (n, 5, 2) or boxes.shape != (n, 4) or (latents is not None and len(latents) != n):
                raise ValueError(
                    f"{meta_path}: arrays do not match the {n} frames (lm5 {lm5.shape}, boxes {boxes.shape}"
                    f"{'' if latents is None else f', latents {latents.shape}'})"
                )
            videos.append(Video(id_dir.name, vid_dir.name, frames, lm5, boxes, latents))
    if not videos:
        raise ValueError(f"{base}: no <identity>/<video>/frames folders")
    return videos


def load_frame(path: Path, size: int) -> tuple[Tensor, float]:
    """Image [3, size, size] in [-1, 1] and the scale applied to its pixel coordinates."""
    try:
        img = Image.open(path).convert("RGB")
    except Exception as err:
        raise ValueError(f"{path}: unreadable image ({err})") from err
    if img.size[0] != img.size[1]:
        raise ValueError(f"{path}: frames must be square crops, got {img.size}")
    scale = size / img.size[0]
    if img.size[0] != size:
        img = img.resize((size, size), Image.BICUBIC)
    arr = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()
    return arr / 127.5 - 1.0, scale


class _FrameReader:
    def __init__(self, videos: list[Video], image_size: int) -> None:
        self.videos = videos
        self.image_size = image_size

    def item(self, v: int, f: int, prefix: str, with_latent: bool = False) -> dict[str, Tensor]:
        video = self.videos[v]
        img, scale = load_frame(video.frames[f], self.image_size)
        out = {
            prefix: img,
            f"{prefix}_lm5": torch.from_numpy(video.lm5[f] * scale),
            f"{prefix}_box": torch.from_numpy(video.boxes[f] * scale),
        }
        if with_latent and video.latents is not None:
            out[f"{prefix}_w"] = torch.from_numpy(video.latents[f])
        return out


class ReenactmentPairs(Dataset):
    """Training items: a source frame, a same-video target (self-reenactment; a different frame when the video
    has more than one) and a frame of another identity (cross-reenactment).

    Every frame is a source once per epoch. Pairing is random but reproducible: drawn from
    ``(seed, epoch, index)``; call :meth:`set_epoch` to change it.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 256, seed: int = 0) -> None:
        self.videos = scan_split(root, split)
        self.reader = _FrameReader(self.videos, image_size)
        self.index = [(v, f) for v, video in enumerate(self.videos) for f in range(len(video.frames))]
        self.seed, self.epoch = seed, 0
        ids = sorted({v.identity for v in self.videos})
        self.by_identity = {i: [k for k, v in enumerate(self.videos) if v.identity == i] for i in ids}
        if len(ids) < 2:
            raise ValueError(f"{Path(root) / split}: cross-reenactment pairs need at least two identities, found {ids}")
        lat = {v.latents is not None for v in self.videos}
        if len(lat) > 1:
            raise ValueError(f"{Path(root) / split}: some videos have cached latents and some do not")
        self.has_latents = lat == {True}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        v, f = self.index[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        n = len(self.videos[v].frames)
        t = f if n == 1 else int((f + 1 + rng.integers(n - 1)) % n)
        others = [k for k in self.by_identity if k != self.videos[v].identity]
        cv = self.by_identity[others[rng.integers(len(others))]]
        cv_i = cv[rng.integers(len(cv))]
        cf = int(rng.integers(len(self.videos[cv_i].frames)))
        out = self.reader.item(v, f, "source", with_latent=True)
        out.update(self.reader.item(v, t, "target"))
        out.update(self.reader.item(cv_i, cf, "cross"))
        return out


class EpochSampler(torch.utils.data.Sampler[int]):
    """Shuffles with a generator seeded by ``(seed, epoch)`` and passes the epoch to the dataset's pairing.

    Lightning calls ``set_epoch`` before each epoch's iterator is created, so workers see the new epoch and a
    resumed run draws the same orders and pairs as an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, shuffle: bool = True) -> None:
        self.dataset, self.seed, self.shuffle, self.epoch = dataset, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        if not self.shuffle:
            return iter(range(len(self.dataset)))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=g).tolist())


class EvaluationPairs(Dataset):
    """Evaluation items on the test split.

    ``mode="self"``: for every video the first frame is the source and each later frame a target (the ground
    truth). ``mode="cross"``: ``num_pairs`` seeded random (source video, target frame of another identity)
    pairs, each source being the first frame of its video.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        image_size: int = 256,
        mode: str = "self",
        num_pairs: int = 1000,
        seed: int = 0,
    ) -> None:
        if mode not in ("self", "cross"):
            raise ValueError(f"mode must be 'self' or 'cross', got {mode!r}")
        self.videos = scan_split(root, split)
        self.reader = _FrameReader(self.videos, image_size)
        self.mode = mode
        if mode == "self":
            self.pairs = [(v, 0, v, f) for v, vid in enumerate(self.videos) for f in range(1, len(vid.frames))]
            if not self.pairs:
                raise ValueError(f"{Path(root) / split}: self-reenactment needs videos with two or more frames")
        else:
            rng = np.random.default_rng(seed)
            ids = sorted({v.identity for v in self.videos})
            if len(ids) < 2:
                raise ValueError(f"{Path(root) / split}: cross-reenactment needs at least two identities")
            self.pairs = []
            for _ in range(num_pairs):
                sv = int(rng.integers(len(self.videos)))
                cands = [k for k, v in enumerate(self.videos) if v.identity != self.videos[sv].identity]
                tv = cands[int(rng.integers(len(cands)))]
                self.pairs.append((sv, 0, tv, int(rng.integers(len(self.videos[tv].frames)))))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        sv, sf, tv, tf = self.pairs[i]
        out = self.reader.item(sv, sf, "source", with_latent=True)
        out.update(self.reader.item(tv, tf, "target"))
        out["pair_index"] = torch.tensor(i)
        return out


# --------------------------------------------------------------------------------------------- synthetic data
@torch.no_grad()
def write_synthetic_vox(
    root: str | os.PathLike,
    generator: torch.nn.Module,
    identities: int = 4,
    videos_per_identity: int = 2,
    frames_per_video: int = 4,
    splits: tuple[str, ...] = ("train", "test"),
    seed: int = 0,
    pose_scale: float = 1.5,
    truncation: float = 1.0,
    mean_latent_samples: int = 4096,
    mean_latent_seed: int = 0,
) -> Path:
    """Render a folder in the VoxCeleb format with ``generator``: each identity is a random W, each video moves
    it along a random direction ("pose"); ``latents`` holds each frame's exact W+ (standing in for e4e codes).
    Landmarks and boxes are the fixed :func:`default_lm5` / :func:`default_box`. With ``truncation < 1`` the
    frames are rendered from the truncated codes (toward the seeded mean latent the model also uses), as the
    e4e codes of real frames are meant to be read by the truncated generator."""
    trunc = mean_latent(generator, mean_latent_samples, mean_latent_seed) if truncation != 1.0 else None
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    size, dim, n_lat = generator.size, generator.style_dim, generator.n_latent
    for s_i, split in enumerate(splits):
        for i in range(identities):
            z = torch.randn(1, dim, generator=g)
            w_id = generator.style(z)
            for v in range(videos_per_identity):
                d = torch.randn(1, dim, generator=g) * pose_scale * w_id.std()
                ts = torch.linspace(-1, 1, frames_per_video).unsqueeze(1)
                w = (w_id + ts * d).unsqueeze(1).repeat(1, n_lat, 1)
                w_render = w if trunc is None else trunc + truncation * (w - trunc)
                imgs = generator.synthesis(w_render, noise="const").clamp(-1, 1)
                vid_dir = root / split / f"id{s_i}{i:04d}" / f"video{v:02d}"
                (vid_dir / "frames").mkdir(parents=True, exist_ok=True)
                arr = ((imgs + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
                for f, frame in enumerate(arr):
                    Image.fromarray(frame).save(vid_dir / "frames" / f"{f:06d}.png")
                np.savez(
                    vid_dir / "meta.npz",
                    lm5=np.repeat(default_lm5(size)[None], frames_per_video, 0),
                    boxes=np.repeat(default_box(size)[None], frames_per_video, 0),
                    latents=w.numpy().astype(np.float32),
                )
    return root


class VoxCelebDataModule(LightningDataModule):
    """Training pairs from ``root/train``, validation/test self-reenactment pairs from ``root/test``.

    ``synthetic=True`` first renders a small folder in the same format with the tiny generator that
    :func:`projects.hyperreenact.model.build_tiny_generator` builds from ``synthetic_seed`` (demo and tests).
    ``source="faceworld"`` renders the pairs instead (no folder): ``faceworld_train_pairs`` training items per
    epoch from train-split identities (:class:`~projects.hyperreenact.faceworld.FaceWorldTrainingPairs`), and
    ``faceworld_val_pairs`` self-reenactment pairs of validation-split identities for validation and test.
    """

    def __init__(
        self,
        root: str = "data/voxceleb1_hyperreenact",
        image_size: int = 256,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        seed: int = 0,
        val_pairs_limit: int | None = None,
        synthetic: bool = False,
        synthetic_identities: int = 4,
        synthetic_videos: int = 2,
        synthetic_frames: int = 4,
        synthetic_truncation: float = 0.7,
        synthetic_pose_scale: float = 0.5,
        synthetic_mean_latent_samples: int = 4096,
        tiny_generator: dict | None = None,
        predict_source: str | None = None,
        predict_driving: str | None = None,
        predict_crop: str = "detect",
        predict_output: str | None = None,
        predict_fps: float | None = None,
        source: str = "folder",
        faceworld_train_pairs: int = 4096,
        faceworld_val_pairs: int = 64,
    ) -> None:
        super().__init__()
        if source not in ("folder", "faceworld"):
            raise ValueError(f"data source must be 'folder' or 'faceworld', got {source!r}")
        self.save_hyperparameters()
        self.train_set: ReenactmentPairs | FaceWorldTrainingPairs | None = None

    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.source == "folder" and hp.synthetic and not (Path(hp.root) / "train").is_dir():
            gen = build_tiny_generator(**(hp.tiny_generator or {}))
            write_synthetic_vox(
                hp.root,
                gen,
                hp.synthetic_identities,
                hp.synthetic_videos,
                hp.synthetic_frames,
                seed=hp.seed,
                truncation=hp.synthetic_truncation,
                pose_scale=hp.synthetic_pose_scale,
                mean_latent_samples=hp.synthetic_mean_latent_samples,
            )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.source == "faceworld":
            if stage in (None, "fit"):
                self.train_set = FaceWorldTrainingPairs(hp.faceworld_train_pairs, hp.image_size, hp.seed)
            if stage in (None, "fit", "validate", "test"):
                self.eval_set = FaceWorldEvaluationPairs("val", hp.image_size, hp.faceworld_val_pairs, "self", hp.seed)
            return
        if stage in (None, "fit"):
            self.train_set = ReenactmentPairs(hp.root, "train", hp.image_size, hp.seed)
        if stage in (None, "fit", "validate", "test"):
            self.eval_set = EvaluationPairs(hp.root, "test", hp.image_size, mode="self", seed=hp.seed)
            if hp.val_pairs_limit is not None:
                self.eval_set = torch.utils.data.Subset(
                    self.eval_set, range(min(hp.val_pairs_limit, len(self.eval_set)))
                )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(
            self.train_set,
            batch_size=self.hparams.batch_size,
            sampler=EpochSampler(self.train_set, self.hparams.seed),
            num_workers=self.hparams.num_workers,
            drop_last=len(self.train_set) >= self.hparams.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_set, batch_size=self.hparams.eval_batch_size, num_workers=self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Driving frames of ``predict_driving`` with the ``predict_source`` crop (``main.py predict``); the
        module's writer saves frames and a video at the driving frame rate under ``predict_output``."""
        hp = self.hparams
        if not hp.predict_source or not hp.predict_driving:
            raise ValueError("predict needs --data.predict_source=IMAGE and --data.predict_driving=VIDEO|DIR|IMAGE")
        self.predict_set = DrivingFrames(hp.predict_source, hp.predict_driving, hp.image_size, hp.predict_crop)
        return DataLoader(self.predict_set, batch_size=hp.eval_batch_size, num_workers=0)
