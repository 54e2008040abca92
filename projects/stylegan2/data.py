"""Training images for StyleGAN2: an image folder, rosinality's LMDB layout, or face-world renders.

Every source yields ``[B, 3, size, size]`` float tensors in [-1, 1].

* ``folder``: every ``.png/.jpg/.jpeg/.webp/.bmp`` under ``root`` (recursive, sorted), converted to RGB, resized
  so the shorter side is ``size`` (Lanczos) and centre-cropped, as rosinality's ``prepare_data.py`` does.
* ``lmdb``: the database ``prepare_data.py`` writes: keys ``f"{size}-{index:05d}"`` hold encoded images (JPEG),
  ``length`` the count. Needs the optional ``lmdb`` package (``pip install lmdb``).
* ``faceworld``: renders of ``common.data.faceworld`` (training identities for training, the disjoint ``val``
  identities for the validation reference), rendered once into a uint8 cache file under ``cache_dir`` and read
  from there (rendering costs ~75 ms per 64 px image on one core; a cache built by another renderer version is
  rebuilt).

``mirror`` doubles a training set with its horizontal flips (item ``n + i`` is item ``i`` flipped: NVIDIA's
``--mirror``; rosinality flips at random, the same distribution). The validation set is the reference the
Fréchet distances compare ``g_ema`` samples against: ``val_length`` images (folder/lmdb: the first of a fixed
permutation of the training images; faceworld: renders of the validation identities).

``batch_size`` is per process (rosinality's ``--batch``: "batch sizes for each gpus").
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.data.resumable import ResumableDataLoader, ResumableSampler, trainer_progress

SOURCES = ("folder", "lmdb", "faceworld")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class MissingDatasetError(FileNotFoundError):
    """The training images are not where the config says; the message says what to put there."""


def to_tensor(img: Image.Image, size: int, source: str) -> Tensor:
    """PIL image -> ``[3, size, size]`` in [-1, 1]: RGB, shorter side resized to ``size`` (Lanczos), centre crop."""
    img = img.convert("RGB")
    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        img = img.resize((nw, nh), Image.LANCZOS)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return x.permute(2, 0, 1).float().div(127.5).sub(1)


class ImageFolderDataset(Dataset):
    """All images under ``root`` (recursive, sorted by path), as ``[3, size, size]`` in [-1, 1]."""

    def __init__(self, root: str | os.PathLike, size: int) -> None:
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise MissingDatasetError(f"{self.root}: no such folder (data.root: a folder of training images)")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise MissingDatasetError(f"{self.root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found in the folder")
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                return to_tensor(img, self.size, str(path))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path}: unreadable image ({e})") from None


class LMDBDataset(Dataset):
    """rosinality's ``MultiResolutionDataset``: images of resolution ``size`` in an LMDB written by ``prepare_data.py``."""

    def __init__(self, path: str | os.PathLike, size: int) -> None:
        try:
            import lmdb
        except ImportError:
            raise ImportError(
                f"data.source 'lmdb' ({path}) needs the optional 'lmdb' package: pip install lmdb "
                f"(or point data.source: folder at the images)"
            ) from None
        self.path = Path(os.path.expanduser(str(path)))
        if not self.path.exists():
            raise MissingDatasetError(f"{self.path}: no such LMDB (rosinality's prepare_data.py --out writes it)")
        self.size = size
        self._lmdb = lmdb
        self._env = None
        with self._open().begin(write=False) as txn:
            raw = txn.get(b"length")
            if raw is None:
                raise ValueError(f"{self.path}: no 'length' key: not an LMDB written by rosinality's prepare_data.py")
            self.length = int(raw.decode("utf-8"))
            if txn.get(self._key(0)) is None:
                raise ValueError(
                    f"{self.path}: no images of resolution {size} (key {self._key(0).decode()!r} missing); "
                    f"prepare_data.py --size must include {size}"
                )

    def _open(self):
        if self._env is None:  # opened lazily so that each DataLoader worker has its own handle
            self._env = self._lmdb.open(
                str(self.path), max_readers=32, readonly=True, lock=False, readahead=False, meminit=False
            )
        return self._env

    def _key(self, i: int) -> bytes:
        return f"{self.size}-{str(i).zfill(5)}".encode()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_env": None, "_lmdb": None}

    def __setstate__(self, state: dict) -> None:
        import lmdb

        self.__dict__.update(state)
        self._lmdb = lmdb

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Tensor:
        with self._open().begin(write=False) as txn:
            raw = txn.get(self._key(i))
        if raw is None:
            raise ValueError(f"{self.path}: key {self._key(i).decode()!r} missing (length says {self.length})")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                return to_tensor(img, self.size, str(self.path))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{self.path}: entry {self._key(i).decode()!r} is not a readable image ({e})") from None


class TensorImages(Dataset):
    """uint8 images ``[N, 3, S, S]`` -> float ``[3, S, S]`` in [-1, 1]."""

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i].float().div(127.5).sub(1)


class Mirrored(Dataset):
    """``base`` followed by its horizontal flips (length ``2 * len(base)``)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return 2 * len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Tensor:
        n = len(self.base)  # type: ignore[arg-type]
        x = self.base[i % n]
        return x.flip(-1) if i >= n else x


class Subset(Dataset):
    def __init__(self, base: Dataset, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Tensor:
        return self.base[self.indices[i]]


# ------------------------------------------------------------------------------------------ face world cache
def _renderer_version() -> str:
    import common.data.faceworld as fw

    return hashlib.sha256(Path(fw.__file__).read_bytes()).hexdigest()[:16]


def faceworld_cache_path(cache_dir: str | os.PathLike, split: str, size: int, length: int, seed: int) -> Path:
    """Where the renders of ``(split, size, length, seed)`` are cached."""
    return Path(os.path.expanduser(str(cache_dir))) / f"faceworld_{split}_{size}px_n{length}_seed{seed}.pt"


def render_faceworld(
    split: str, size: int, length: int, seed: int = 0, batch: int = 64, progress: bool = True
) -> dict[str, Tensor]:
    """Render items ``0..length-1`` of ``FaceWorldDataset(split, size, seed)``: uint8 images and their parameters."""
    from common.data.faceworld import FaceWorldDataset, render

    ds = FaceWorldDataset(split, size=size, length=length, seed=seed)
    images = torch.empty(length, 3, size, size, dtype=torch.uint8)
    params: dict[str, list[Tensor]] = {"identity_index": [], "pose": [], "expression": []}
    for start in range(0, length, batch):
        idx = list(range(start, min(length, start + batch)))
        p = ds.params(idx)
        with torch.no_grad():
            img = render(p["identity"], p["pose"], p["expression"], size)
        images[idx[0] : idx[-1] + 1] = img.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        for k in params:
            params[k].append(p[k])
        if progress and (start // batch) % 10 == 0:
            print(f"[stylegan2] rendering face world {split} {size}px: {idx[-1] + 1}/{length}", flush=True)
    return {"images": images, **{k: torch.cat(v) for k, v in params.items()}}


def load_faceworld_cache(cache_dir: str | os.PathLike, split: str, size: int, length: int, seed: int) -> Tensor:
    """uint8 renders ``[length, 3, size, size]`` from the cache, rendering (and saving) them when absent or stale."""
    path = faceworld_cache_path(cache_dir, split, size, length, seed)
    version = _renderer_version()
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: say so and rebuild
            print(f"[stylegan2] {path}: unreadable cache ({e}); rendering again", flush=True)
            blob = None
        if isinstance(blob, dict) and blob.get("renderer") == version:
            images = blob["images"]
            if images.shape != (length, 3, size, size) or images.dtype != torch.uint8:
                raise ValueError(f"{path}: cache holds {tuple(images.shape)} {images.dtype}, expected uint8 "
                                 f"{(length, 3, size, size)}; delete the file")  # fmt: skip
            return images
        if blob is not None:
            print(f"[stylegan2] {path}: made by another renderer version; rendering again", flush=True)
    blob = render_faceworld(split, size, length, seed)
    blob["renderer"] = version
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return blob["images"]


# ------------------------------------------------------------------------------------------ data module
class StyleGAN2DataModule(LightningDataModule):
    """Training images and the validation reference set (see the module docstring).

    Args:
        source: ``folder``, ``lmdb`` or ``faceworld``.
        root: the image folder or the LMDB path (folder/lmdb).
        size: image resolution (the generator's ``size``).
        batch_size: per process.
        num_workers: loader workers per process.
        mirror: add horizontal flips of the training images.
        val_length: images in the validation reference set (and g_ema samples per Fréchet distance).
        val_batch_size: validation batch (default: ``batch_size``).
        train_length: faceworld: renders in the training set.
        cache_dir: faceworld: where the renders are cached.
        seed: the shuffling order (and the faceworld draws).
        limit_train: use only the first N training images (tests, quick looks).
    """

    def __init__(
        self,
        source: str = "faceworld",
        root: str | None = None,
        size: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        mirror: bool = False,
        val_length: int = 1000,
        val_batch_size: int | None = None,
        train_length: int = 20_000,
        cache_dir: str = "data/faceworld_cache",
        seed: int = 0,
        limit_train: int | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
        if source in ("folder", "lmdb") and not root:
            raise ValueError(f"data.source {source!r} needs data.root (the image folder or LMDB path)")
        self.save_hyperparameters()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def prepare_data(self) -> None:
        h = self.hparams
        if h.source == "faceworld":  # render once (rank 0); setup() then reads the cache on every rank
            load_faceworld_cache(h.cache_dir, "train", h.size, h.train_length, h.seed)
            if h.val_length:
                load_faceworld_cache(h.cache_dir, "val", h.size, h.val_length, h.seed)

    def _base(self) -> Dataset:
        h = self.hparams
        if h.source == "folder":
            return ImageFolderDataset(h.root, h.size)
        if h.source == "lmdb":
            return LMDBDataset(h.root, h.size)
        return TensorImages(load_faceworld_cache(h.cache_dir, "train", h.size, h.train_length, h.seed))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        base = self._base()
        train = base if h.limit_train is None else Subset(base, list(range(min(h.limit_train, len(base)))))
        self.train_set = Mirrored(train) if h.mirror else train
        if h.val_length:
            if h.source == "faceworld":
                self.val_set = TensorImages(load_faceworld_cache(h.cache_dir, "val", h.size, h.val_length, h.seed))
            else:
                g = torch.Generator().manual_seed(h.seed + 1)
                order = torch.randperm(len(base), generator=g)[: h.val_length].tolist()
                self.val_set = Subset(base, order)

    def _world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 1, 0
        return int(self.trainer.world_size), int(self.trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        h = self.hparams
        world, rank = self._world()
        if len(self.train_set) < h.batch_size * world:
            raise ValueError(
                f"{len(self.train_set)} training images are fewer than one batch ({h.batch_size} x {world})"
            )
        sampler = ResumableSampler(self.train_set, seed=h.seed, shuffle=True, num_replicas=world, rank=rank)
        loader = ResumableDataLoader(
            self.train_set, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers, drop_last=True,
            pin_memory=torch.cuda.is_available(), persistent_workers=h.num_workers > 0,
        )  # fmt: skip
        if self.trainer is not None:
            loader.progress = lambda: trainer_progress(self.trainer)
        return loader

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            return []  # type: ignore[return-value]
        h = self.hparams
        return DataLoader(self.val_set, batch_size=h.val_batch_size or h.batch_size, shuffle=False,
                          num_workers=h.num_workers)  # fmt: skip
