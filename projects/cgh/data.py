"""CGH data: CIFAR-10/100, STL-10, Tiny-ImageNet, ImageNet (and the bundled digits) from local files.

Every dataset item is ``(image, label, index)``; pretraining items hold a list of views instead of one
image: ``[weak (teacher), strong (student), *local crops]``. Unlabeled STL-10 images have label -1.

Expected layouts under ``root`` (the folder named in the error when something is missing):

* cifar10:      ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (the python pickles)
* cifar100:     ``cifar-100-python/{train, test}``
* stl10:        ``stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin}``
* tinyimagenet: ``tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*, val/val_annotations.txt}``
* imagenet:     ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG`` (optionally restricted by ``class_list``)
* digits:       scikit-learn's bundled 8x8 digits (no files)
* shapes:       procedural shapes drawn on the fly (``projects.cgh.shapes``; no files), 5,000 train / 2,000 test
* shapes_hard:  the same classes with smaller objects anywhere in the frame and colours from the SSL colour jitter
                (``projects.cgh.shapes.STYLES["shapes_hard"]``), 5,000 train / 2,000 test
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from common.data.transforms import MultiViews
from common.errors import LineErrors
from projects.cgh.augment import TEACHER_VIEWS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class DatasetInfo:
    """Native image size, number of classes, channels and normalisation of a dataset."""

    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_channels: int = 3


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IN_MEAN, _IN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(32, 10, _CIFAR_MEAN, _CIFAR_STD),
    "cifar100": DatasetInfo(32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": DatasetInfo(96, 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "tinyimagenet": DatasetInfo(64, 200, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "imagenet": DatasetInfo(224, 1000, _IN_MEAN, _IN_STD),
    "digits": DatasetInfo(12, 10, (0.5,), (0.25,), in_channels=1),
    "shapes": DatasetInfo(32, 10, (0.3975, 0.3982, 0.3984), (0.2859, 0.2843, 0.2860)),
    "shapes_hard": DatasetInfo(32, 10, (0.3506, 0.4201, 0.4707), (0.2607, 0.3103, 0.3390)),
    "shapes_many": DatasetInfo(32, 10, (0.3629, 0.4143, 0.4439), (0.2662, 0.3025, 0.3253)),
}
PROCEDURAL = ("shapes", "shapes_hard", "shapes_many")  # drawn by projects.cgh.shapes (the name is the style), no files


# --------------------------------------------------------------------------------------------- raw readers
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: builds dicts, lists and numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
        ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def load_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch -> (images uint8 ``[N, 32, 32, 3]``, labels int64 ``[N]``)."""
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{path}: not a readable CIFAR python batch ({exc})") from exc
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"{path}: CIFAR batch lacks 'data' or '{label_key}' (keys: {sorted(entry)})")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected data [N, 3072] and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_files(name: str, split: str) -> tuple[str, list[str], str]:
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return "cifar-10-batches-py", files, "labels"
    return "cifar-100-python", ["train" if split == "train" else "test"], "fine_labels"


def _stl_read(path: Path, kind: str) -> np.ndarray:
    if kind == "X":
        arr = np.memmap(path, dtype=np.uint8, mode="r")
        if arr.size % (3 * 96 * 96):
            raise ValueError(f"{path}: size {arr.size} bytes is not a multiple of one 3x96x96 image")
        return arr.reshape(-1, 3, 96, 96)  # column-major per channel: [N, C, W, H]
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: STL-10 labels must be 1..10, found {labels.min() + 1}..{labels.max() + 1}")
    return labels


def _folder_samples(folder: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    samples = []
    for label, cls in enumerate(classes):
        d = folder / cls
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: class folder missing")
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{d}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples += [(p, label) for p in files]
    return samples


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc


# ------------------------------------------------------------------------------------------- datasets
class ArrayDataset(Dataset):
    """Images held as uint8 arrays ``[N, H, W, C]`` (or STL's ``[N, C, W, H]`` memmaps) -> (x, label, index)."""

    def __init__(
        self,
        parts: Sequence[tuple[np.ndarray, np.ndarray]],
        transform: Callable | None = None,
        chw_transposed: bool = False,
    ) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(x) for x, _ in self.parts])
        self.transform = transform
        self.chw_transposed = chw_transposed

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        p = int(np.searchsorted(self.offsets, index, side="right") - 1)
        x, y = self.parts[p]
        i = index - int(self.offsets[p])
        arr = np.asarray(x[i])
        if self.chw_transposed:
            arr = arr.transpose(2, 1, 0)
        img = Image.fromarray(np.ascontiguousarray(arr))
        return (self.transform(img) if self.transform else img), int(y[i]), index

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([y for _, y in self.parts])


class FileDataset(Dataset):
    """Image files with labels -> (x, label, index)."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: Callable | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        path, label = self.samples[index]
        img = _load_rgb(path)
        return (self.transform(img) if self.transform else img), label, index


def missing_files(dataset: str, root: str | Path) -> list[str]:
    """Paths a dataset needs under ``root`` that do not exist (empty list: ready)."""
    root = Path(root)
    if dataset == "digits" or dataset in PROCEDURAL:
        return []
    if dataset in ("cifar10", "cifar100"):
        sub, train, _ = _cifar_files(dataset, "train")
        _, test, _ = _cifar_files(dataset, "test")
        base = root if (root / train[0]).exists() else root / sub
        return [str(base / f) for f in train + test if not (base / f).is_file()]
    if dataset == "stl10":
        base = root if (root / "train_X.bin").exists() else root / "stl10_binary"
        names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"]
        return [str(base / f) for f in names if not (base / f).is_file()]
    if dataset == "tinyimagenet":
        base = root if (root / "wnids.txt").exists() else root / "tiny-imagenet-200"
        need = [base / "wnids.txt", base / "train", base / "val" / "images", base / "val" / "val_annotations.txt"]
        return [str(p) for p in need if not p.exists()]
    if dataset == "imagenet":
        return [str(root / s) for s in ("train", "val") if not (root / s).is_dir()]
    raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")


def build_dataset(
    dataset: str, root: str | Path, split: str, transform: Callable | None = None, class_list: str | None = None
) -> Dataset:
    """``split``: ``"train"``, ``"test"``, or for STL-10 also ``"unlabeled"`` / ``"train+unlabeled"``.

    Raises FileNotFoundError listing every missing file, ValueError on malformed files.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    missing = missing_files(dataset, root)
    if missing:
        raise FileNotFoundError(
            f"{dataset}: missing under {root}: "
            + ", ".join(missing)
            + " (see projects/cgh/README.md for where the files go)"
        )
    root = Path(root)
    if dataset == "digits":
        from common.data.digits import NoisyDigits

        return NoisyDigits(
            split="train" if split == "train" else "test", canvas=DATASETS["digits"].image_size, transform=transform
        )
    if dataset in PROCEDURAL:
        from projects.cgh.shapes import ProceduralShapes

        if split not in ("train", "test"):
            raise ValueError(f"{dataset}: split must be train or test, got {split!r}")
        return ProceduralShapes(split, size=DATASETS[dataset].image_size, transform=transform, style=dataset)
    if dataset in ("cifar10", "cifar100"):
        if split not in ("train", "test"):
            raise ValueError(f"{dataset}: split must be train or test, got {split!r}")
        sub, files, key = _cifar_files(dataset, split)
        base = root if (root / files[0]).exists() else root / sub
        return ArrayDataset([load_cifar_batch(base / f, key) for f in files], transform)
    if dataset == "stl10":
        base = root if (root / "train_X.bin").exists() else root / "stl10_binary"
        parts = []
        for s in split.split("+"):
            if s not in ("train", "test", "unlabeled"):
                raise ValueError(f"stl10: unknown split {s!r} (train, test, unlabeled, train+unlabeled)")
            x = _stl_read(base / f"{s}_X.bin", "X")
            y = _stl_read(base / f"{s}_y.bin", "y") if s != "unlabeled" else np.full(len(x), -1, dtype=np.int64)
            if len(x) != len(y):
                raise ValueError(f"{base}/{s}_X.bin holds {len(x)} images but {s}_y.bin {len(y)} labels")
            parts.append((x, y))
        return ArrayDataset(parts, transform, chw_transposed=True)
    if dataset == "tinyimagenet":
        base = root if (root / "wnids.txt").exists() else root / "tiny-imagenet-200"
        wnids = sorted(w.strip() for w in (base / "wnids.txt").read_text().splitlines() if w.strip())
        if split == "train":
            samples = []
            for label, w in enumerate(wnids):
                d = base / "train" / w / "images"
                files = sorted(p for p in d.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if d.is_dir() else []
                if not files:
                    raise FileNotFoundError(f"{d}: no training images for class {w}")
                samples += [(p, label) for p in files]
            return FileDataset(samples, transform)
        index = {w: i for i, w in enumerate(wnids)}
        samples = []
        ann = base / "val" / "val_annotations.txt"
        errors = LineErrors(ann, expected="'<file>\\t<wnid>...' with a wnid from wnids.txt")
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            errors.lines_seen = n
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) < 2:
                errors.add(n, f"{len(cols)} tab-separated field(s), expected at least 2", line)
            elif cols[1] not in index:
                errors.add(n, f"wnid {cols[1]!r} is not in wnids.txt", line)
            else:
                samples.append((base / "val" / "images" / cols[0], index[cols[1]]))
        errors.raise_if_any()
        return FileDataset(samples, transform)
    # imagenet
    folder = root / ("train" if split == "train" else "val")
    if class_list:
        classes = [c.strip() for c in Path(class_list).read_text().splitlines() if c.strip()]
    else:
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    return FileDataset(_folder_samples(folder, classes), transform)


# ----------------------------------------------------------------------------------------- transforms
class PerImageStandardize:
    """``(x - mean(x)) / std(x)`` per image: removes the digits' random background level and contrast, which
    would otherwise let instance discrimination succeed without looking at the digit's shape."""

    def __call__(self, x: Tensor) -> Tensor:
        return (x - x.mean()) / (x.std() + 1e-6)


class AddGaussianNoise:
    """Adds N(0, sigma^2) noise to a tensor image with probability p (used for the digits)."""

    def __init__(self, sigma: float = 0.1, p: float = 0.5) -> None:
        self.sigma, self.p = sigma, p

    def __call__(self, x: Tensor) -> Tensor:
        if torch.rand(()) < self.p:
            return x + self.sigma * torch.randn_like(x)
        return x


def _blur_kernel(size: int) -> int:
    k = max(3, int(0.1 * size))
    return k if k % 2 else k + 1


def pretrain_transforms(
    dataset: str,
    image_size: int | None = None,
    blur_prob: float = 0.5,
    local_crops: Sequence[tuple[int, float, float]] = (),
) -> Callable:
    """Views ``[weak, strong, *local]``: weak = RRC(0.2-1) + flip (teacher); strong = MoCo v2 (student).

    local_crops: ``(size, min_scale, max_scale)`` per extra student crop (ReSSL multi-crop), strong recipe.
    The digits use tensor transforms without flips (a flip changes a digit): RRC(0.6-1) + translation,
    strong adds brightness/contrast jitter, Gaussian noise and random erasing.
    """
    info = DATASETS[dataset]
    size = image_size or info.image_size
    norm = PerImageStandardize() if dataset == "digits" else T.Normalize(info.mean, info.std)
    if dataset == "digits":

        def weak_at(s: int, lo: float = 0.6, hi: float = 1.0) -> list:
            # the blur hides each image's fixed pixel-noise pattern, an instance shortcut unrelated to the digit
            return [
                T.RandomResizedCrop(s, scale=(lo, hi), ratio=(0.8, 1.25), antialias=True),
                T.RandomAffine(degrees=0, translate=(0.1, 0.1)),
                T.GaussianBlur(3, sigma=(0.5, 1.0)),
            ]

        def strong_at(s: int, lo: float = 0.6, hi: float = 1.0) -> T.Compose:
            return T.Compose(
                [
                    *weak_at(s, lo, hi),
                    T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8),
                    AddGaussianNoise(0.15, 0.8),
                    norm,
                    T.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0.0),
                ]
            )

        views = [T.Compose([*weak_at(size), norm]), strong_at(size)]
        views += [strong_at(s, lo, hi) for s, lo, hi in local_crops]
        return MultiViews(views)

    def strong_at(s: int, lo: float = 0.2, hi: float = 1.0) -> T.Compose:
        return T.Compose(
            [
                T.RandomResizedCrop(s, scale=(lo, hi)),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(_blur_kernel(s), sigma=(0.1, 2.0))], p=blur_prob),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                norm,
            ]
        )

    weak = T.Compose([T.RandomResizedCrop(size, scale=(0.2, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    return MultiViews([weak, strong_at(size), *[strong_at(s, lo, hi) for s, lo, hi in local_crops]])


def eval_transform(dataset: str, image_size: int | None = None) -> Callable:
    """Resize(size*8/7) + CenterCrop for sizes >= 224 (ImageNet), else the native image; then Normalize."""
    info = DATASETS[dataset]
    size = image_size or info.image_size
    if dataset == "digits":
        return PerImageStandardize()
    norm = T.Normalize(info.mean, info.std)
    if size >= 224:
        return T.Compose([T.Resize(int(round(size * 8 / 7))), T.CenterCrop(size), T.ToTensor(), norm])
    if size != info.image_size:
        return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), norm])
    return T.Compose([T.ToTensor(), norm])


def linear_train_transform(dataset: str, image_size: int | None = None) -> Callable:
    """Linear-probe training augmentation: RandomResizedCrop + horizontal flip (official ``eval_lincls``)."""
    info = DATASETS[dataset]
    size = image_size or info.image_size
    if dataset == "digits":
        return T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), PerImageStandardize()])
    norm = T.Normalize(info.mean, info.std)
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])


# ------------------------------------------------------------------------------------------ datamodule
class CGHDataModule(LightningDataModule):
    """Pretraining (``task="pretrain"``) or linear-probe (``task="linear"``) data for one dataset.

    pretrain: train = views of the pretraining split (STL-10: train+unlabeled), shuffled, drop_last;
              test = [memory = labeled train split, query = test split], both with the eval transform
              (used by the final kNN and by ``knn_datasets()`` for the kNN monitor).
    linear:   train = labeled train split with RRC + flip; val and test = test split, eval transform.

    Args:
        dataset: cifar10, cifar100, stl10, tinyimagenet, imagenet, digits, shapes or shapes_hard.
        root: folder with the files (see the module docstring).
        local_crops: multi-crop, list of ``[size, min_scale, max_scale]`` (empty: single crop).
        limit_train: use only the first N pretraining/linear training images (tests, quick runs); 0 = all.
        limit_eval: same for the kNN memory/query and linear val/test sets; 0 = all.
        batch_views: pretraining views made per batch by ``projects.cgh.augment.BatchViews`` after the batch
            is on the device (same recipe, about 20x faster than the per-image PIL pipeline on small images);
            the loader then yields uint8 images. RGB datasets only.
        teacher_view: ``weak`` (ReSSL/CGH) or ``strong`` (the teacher gets a second strong view, MoCo v2's
            recipe; an ablation, with ``batch_views`` only).
    """

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data/cifar10",
        task: str = "pretrain",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 8,
        image_size: int | None = None,
        blur_prob: float = 0.5,
        local_crops: list[list[float]] | None = None,
        class_list: str | None = None,
        limit_train: int = 0,
        limit_eval: int = 0,
        batch_views: bool = False,
        teacher_view: str = "weak",
    ) -> None:
        super().__init__()
        if teacher_view not in TEACHER_VIEWS:
            raise ValueError(f"teacher_view must be one of {TEACHER_VIEWS}, got {teacher_view!r}")
        if teacher_view != "weak" and not batch_views:
            raise ValueError("teacher_view='strong' needs batch_views: true")
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
        if task not in ("pretrain", "linear"):
            raise ValueError(f"task must be 'pretrain' or 'linear', got {task!r}")
        if batch_views and DATASETS[dataset].in_channels != 3:
            raise ValueError(
                f"batch_views needs an RGB dataset; {dataset} has {DATASETS[dataset].in_channels} channel(s)"
            )
        self.save_hyperparameters()
        self.info = DATASETS[dataset]
        self._batch_views = None
        self.num_classes = self.info.num_classes
        self._train: Dataset | None = None
        self._memory: Dataset | None = None
        self._query: Dataset | None = None

    def _limit(self, ds: Dataset, n: int) -> Dataset:
        return torch.utils.data.Subset(ds, range(min(n, len(ds)))) if n else ds

    def setup(self, stage: str | None = None) -> None:
        if self._memory is not None:
            return
        h = self.hparams
        ev = eval_transform(h.dataset, h.image_size)
        if h.task == "pretrain":
            crops = [(int(c[0]), float(c[1]), float(c[2])) for c in (h.local_crops or [])]
            split = "train+unlabeled" if h.dataset == "stl10" else "train"
            if h.batch_views:
                from projects.cgh.augment import BatchViews

                size = h.image_size or self.info.image_size
                self._batch_views = BatchViews(
                    size,
                    self.info.mean,
                    self.info.std,
                    blur_prob=h.blur_prob,
                    blur_kernel=_blur_kernel(size),
                    local_crops=crops,
                    teacher_view=h.teacher_view,
                )
                tf = (
                    T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
                    if h.image_size
                    else T.PILToTensor()
                )
            else:
                tf = pretrain_transforms(h.dataset, h.image_size, h.blur_prob, crops)
            self._train = self._limit(build_dataset(h.dataset, h.root, split, tf, h.class_list), h.limit_train)
        else:
            tf = linear_train_transform(h.dataset, h.image_size)
            self._train = self._limit(build_dataset(h.dataset, h.root, "train", tf, h.class_list), h.limit_train)
        self._memory = self._limit(build_dataset(h.dataset, h.root, "train", ev, h.class_list), h.limit_eval)
        self._query = self._limit(build_dataset(h.dataset, h.root, "test", ev, h.class_list), h.limit_eval)

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(
            ds,
            batch_size=h.batch_size if train else h.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=h.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=h.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``batch_views``: a pretraining batch ``(uint8 images, labels, indices)`` becomes
        ``([weak, strong, *local], labels, indices)`` (training only; evaluation batches pass unchanged)."""
        trainer = getattr(self, "trainer", None)
        if self._batch_views is not None and trainer is not None and trainer.training:
            x, y, idx = batch
            return self._batch_views(x), y, idx
        return batch

    def knn_datasets(self) -> tuple[Dataset, Dataset]:
        """(memory = labeled train split, query = test split), both with the eval transform."""
        self.setup()
        return self._memory, self._query

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self._train, train=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.hparams.task == "pretrain":
            return []
        self.setup()
        return self._loader(self._query, train=False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        self.setup()
        if self.hparams.task == "pretrain":
            return [self._loader(self._memory, train=False), self._loader(self._query, train=False)]
        return self._loader(self._query, train=False)
