"""StyleMask data: random latent pairs for training (no dataset), fixed pairs for validation, real inputs to predict.

* train: ``RandomLatentTriplets`` draws ``z_source, z_target, z_cycle ~ N(0, I)``; item ``i`` is seeded by
  ``(seed, i)`` so an epoch is reproducible and a resumed run sees the same codes.
* val/test: the official validation pairs ``random_latent_codes_100.npy`` (``[2N, 512]``: N sources then N
  targets), all N pairs; without the file, N fixed pairs drawn from ``seed``.
* predict: ``source`` (an image, or a ``.npy`` z ``[1,512]`` / W+ ``[1,L,512]`` code) and ``target`` (an image, a
  folder of images, a ``.npy`` code, or a video: frames streamed in order, no cap).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from projects.stylemask.metrics import load_validation_pairs

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


class RandomLatentTriplets(Dataset):
    """``length`` items ``{'z_source', 'z_target', 'z_cycle'}`` each ``[z_dim]`` from N(0, I), seeded per index."""

    def __init__(self, length: int, z_dim: int = 512, seed: int = 0) -> None:
        self.length, self.z_dim, self.seed = length, z_dim, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        z = torch.randn(3, self.z_dim, generator=g)
        return {"z_source": z[0], "z_target": z[1], "z_cycle": z[2]}


class LatentPairs(Dataset):
    """Fixed ``(z_source, z_target)`` pairs ``[N, z_dim]`` each; item = dict with the pair index."""

    def __init__(self, z_source: Tensor, z_target: Tensor) -> None:
        if z_source.shape != z_target.shape:
            raise ValueError(f"source and target codes differ in shape: {z_source.shape} vs {z_target.shape}")
        self.z_source, self.z_target = z_source, z_target

    def __len__(self) -> int:
        return self.z_source.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"z_source": self.z_source[i], "z_target": self.z_target[i], "index": torch.tensor(i)}


def read_image(path: str | os.PathLike, size: int) -> Tensor:
    """RGB image file -> ``[3, size, size]`` float in [-1, 1] (resized with antialiasing), clear error on failure."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except Exception as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc
    return frame_to_tensor(arr, size)


def frame_to_tensor(arr: np.ndarray, size: int) -> Tensor:
    """uint8 ``[H,W,3]`` -> ``[3,size,size]`` in [-1,1]."""
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 127.5 - 1
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return x


def read_code(path: str | os.PathLike, z_dim: int) -> Tensor:
    """``.npy`` latent: z ``[1,D]``/``[D]`` or W+ ``[1,L,D]``/``[L,D]`` -> ``[D]`` or ``[L,D]`` float tensor."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read latent code ({exc})") from exc
    t = torch.from_numpy(np.asarray(arr, dtype=np.float32))
    if t.ndim >= 2 and t.shape[0] == 1:
        t = t[0]
    if t.shape[-1] != z_dim or t.ndim not in (1, 2):
        raise ValueError(f"{path}: expected a z [1,{z_dim}] or W+ [1,L,{z_dim}] code, got shape {tuple(arr.shape)}")
    return t


class FaceAligner:
    """Source/target preparation for real images: FFHQ alignment with MTCNN landmarks (common/face), or none.

    ``mode="ffhq"``: detect the face (a missing face raises, naming the file and frame), align as FFHQ and
    resize to ``size``. ``mode="none"``: the image is already aligned; only resize.
    """

    def __init__(self, mode: str = "ffhq", size: int = 256) -> None:
        if mode not in ("ffhq", "none"):
            raise ValueError(f"align must be 'ffhq' or 'none', got {mode!r}")
        self.mode, self.size = mode, size
        self._detector = None

    def __call__(self, arr: np.ndarray, name: str) -> Tensor:
        if self.mode == "none":
            return frame_to_tensor(arr, self.size)
        from common.face.align import ffhq_align
        from common.face.detect import FaceDetector

        if self._detector is None:
            self._detector = FaceDetector()
        det = self._detector.detect(arr, require=True, source=name)
        aligned = ffhq_align(arr, det.landmarks5, self.size)
        aligned = aligned if isinstance(aligned, np.ndarray) else np.asarray(aligned)
        return frame_to_tensor(aligned, self.size)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except Exception as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc


class ReenactmentInputs(IterableDataset):
    """Predict inputs: one source against each target item, streamed in order.

    Yields ``{'source': [3,S,S] or code, 'source_kind': 'image'|'z'|'wplus', 'target': ..., 'target_kind': ...,
    'frame': int, 'name': str}``. A video target is read frame by frame (no cap); its frame rate is ``self.fps``.
    """

    def __init__(self, source: str, target: str, size: int = 256, align: str = "ffhq", z_dim: int = 512) -> None:
        self.source, self.target = Path(source), Path(target)
        for p in (self.source, self.target):
            if not p.exists():
                raise FileNotFoundError(f"reenactment input not found: {p}")
        self.size, self.z_dim = size, z_dim
        self.aligner = FaceAligner(align, size)
        self.fps: float | None = None
        self.is_video = self.target.suffix.lower() in VIDEO_EXTS
        if self.is_video:
            from common.data.video import video_info

            _, self.fps, _ = video_info(self.target)

    def _item(self, path: Path, arr: np.ndarray | None = None, frame: int = 0) -> tuple[Tensor, str]:
        if arr is None and path.suffix.lower() == ".npy":
            code = read_code(path, self.z_dim)
            return code, ("z" if code.ndim == 1 else "wplus")
        if arr is None:
            arr = _load_rgb(path)
        return self.aligner(arr, f"{path}" + (f" frame {frame}" if self.is_video else "")), "image"

    def target_files(self) -> list[Path]:
        if self.target.is_dir():
            files = sorted(p for p in self.target.iterdir() if p.suffix.lower() in IMAGE_EXTS | {".npy"})
            if not files:
                raise ValueError(f"{self.target}: folder holds no images or .npy codes")
            return files
        return [self.target]

    def __iter__(self) -> Iterator[dict]:
        src, src_kind = self._item(self.source)
        if self.is_video:
            from common.data.video import iter_video

            for i, frame in enumerate(iter_video(self.target)):
                tgt, kind = self._item(self.target, frame, i)
                yield {
                    "source": src,
                    "source_kind": src_kind,
                    "target": tgt,
                    "target_kind": kind,
                    "frame": i,
                    "name": self.target.stem,
                }
            return
        for i, p in enumerate(self.target_files()):
            tgt, kind = self._item(p)
            yield {
                "source": src,
                "source_kind": src_kind,
                "target": tgt,
                "target_kind": kind,
                "frame": i,
                "name": p.stem,
            }


def _collate_predict(items: list[dict]) -> dict:
    out: dict = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], Tensor) else vals
    return out


class StyleMaskDataModule(LightningDataModule):
    """Random latent triplets to train, the official fixed pairs to validate/test, real files to predict.

    ``steps_per_epoch`` x ``batch_size`` triplets make an epoch (the paper trains 100k steps of 12).
    ``val_pairs``: ``"official"`` (``random_latent_codes_100.npy``: ``val_pairs_path`` or the registry's
    ``stylemask_validation_codes``) or ``"random"`` (``num_val_pairs`` pairs from ``seed + 1``, unless
    ``val_pairs_path`` is given).
    Predict: ``source``, ``target`` (see ``ReenactmentInputs``), ``align`` (``ffhq`` or ``none``),
    ``input_size`` (the inverter's input, 256 for e4e), ``output_dir`` (default: ``<run folder>/reenactment``),
    ``grid`` (write source | target | reenacted side by side).
    """

    def __init__(
        self,
        batch_size: int = 12,
        steps_per_epoch: int = 1000,
        z_dim: int = 512,
        val_pairs: str = "random",
        val_pairs_path: str | None = None,
        num_val_pairs: int = 100,
        val_batch_size: int = 4,
        seed: int = 0,
        source: str | None = None,
        target: str | None = None,
        align: str = "ffhq",
        input_size: int = 256,
        predict_batch_size: int = 8,
        output_dir: str | None = None,
        grid: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.predict_inputs: ReenactmentInputs | None = None

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        ds = RandomLatentTriplets(h.steps_per_epoch * h.batch_size, h.z_dim, h.seed)
        return DataLoader(ds, batch_size=h.batch_size, shuffle=False, drop_last=True, num_workers=h.num_workers)

    def _pairs(self) -> LatentPairs:
        h = self.hparams
        if h.val_pairs not in ("official", "random"):
            raise ValueError(f"val_pairs must be 'official' or 'random', got {h.val_pairs!r}")
        if h.val_pairs == "official" or h.val_pairs_path:
            from common.weights import resolve

            path = resolve("stylemask_validation_codes", h.val_pairs_path)
            zs, zt = load_validation_pairs(path)
            if zs.shape[1] != h.z_dim:
                raise ValueError(f"{path}: codes have {zs.shape[1]} dims, the generator takes {h.z_dim}")
        else:
            g = torch.Generator().manual_seed(h.seed + 1)
            zs = torch.randn(h.num_val_pairs, h.z_dim, generator=g)
            zt = torch.randn(h.num_val_pairs, h.z_dim, generator=g)
        return LatentPairs(zs, zt)

    def val_dataloader(self) -> DataLoader:
        # drop_last=False: every pair is scored (the official loader drops the last incomplete batch)
        return DataLoader(
            self._pairs(), batch_size=self.hparams.val_batch_size, shuffle=False, num_workers=self.hparams.num_workers
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        h = self.hparams
        if not h.source or not h.target:
            raise ValueError("predict needs --data.source and --data.target (image, folder, .npy code or video)")
        self.predict_inputs = ReenactmentInputs(h.source, h.target, h.input_size, h.align, h.z_dim)
        return DataLoader(
            self.predict_inputs, batch_size=h.predict_batch_size, collate_fn=_collate_predict, num_workers=0
        )
