"""MaskCon's data sets (coarse labels for training, fine labels for evaluation) and the LightningDataModule.

Every base data set returns ``(image, coarse, fine)`` with ``image`` a PIL image (or a tensor for the bundled
digits). ``TwoViewDataset`` turns it into training items ``((key_view, query_view), coarse, fine, index)`` and
``EvalDataset`` into ``(image, coarse, fine, index)``. Augmentations are drawn from a generator seeded by
(seed, epoch, index), so a run resumed from a checkpoint sees exactly the views a straight run would.

Where the files go (``data_root`` defaults to ``data/``; ``MissingDatasetError`` says the same):

=================  =================================================================================
cifartoy_good/bad  ``<root>/cifar-10-batches-py/`` (the CIFAR-10 python pickles)
cifar100           ``<root>/cifar-100-python/`` (the CIFAR-100 python pickles, 20 superclasses)
imagenet32         ``<root>/imagenet32/`` with ``train_data_batch_1..10``, ``val_data`` and the official repo's
                   ``coarse_labels/imagenet32/{imagenet32_to_fine,imagenet_fine_to_coarse}.json`` copied in
sop_split1/2       ``<root>/Stanford_Online_Products/`` (the image folders ``bicycle_final/`` ...) with the
                   official repo's ``coarse_labels/sop_split1/`` and ``sop_split2/`` folders copied in
cars196            ``<root>/stanford_cars/`` in torchvision's ``StanfordCars`` layout
csv                ``train_csv`` / ``test_csv``: lines ``path,coarse[,fine]`` (header optional), paths relative
                   to the CSV's folder unless absolute
digits             nothing (scikit-learn's bundled digits, ``common/data/digits.py``)
=================  =================================================================================
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from common.data.resumable import ResumableDataLoader, ResumableSampler, trainer_progress
from common.errors import AnnotationError, LineErrors

DATASETS = (
    "cifartoy_good",
    "cifartoy_bad",
    "cifar100",
    "imagenet32",
    "sop_split1",
    "sop_split2",
    "cars196",
    "csv",
    "digits",
)


class MissingDatasetError(FileNotFoundError):
    """A data set's files are absent; the message lists what to put where (``absent``: (path, what) pairs)."""

    def __init__(self, message: str, dataset: str = "", absent: Sequence[tuple[Path, str]] = (), source: str = ""):
        super().__init__(message)
        self.dataset, self.absent, self.source = dataset, list(absent), source


def _missing_message(dataset: str, absent: Sequence[tuple[Path, str]], source: str) -> str:
    lines = [f"data set {dataset!r} is missing; put these files in place:"]
    lines += [f"  {p}  <- {what}" for p, what in absent]
    lines.append(f"  source: {source}")
    return "\n".join(lines)


def _missing(dataset: str, items: Sequence[tuple[Path, str]], source: str) -> None:
    absent = [(p, what) for p, what in items if not p.exists()]
    if absent:
        raise MissingDatasetError(_missing_message(dataset, absent, source), dataset, absent, source)


# --------------------------------------------------------------------------------------------- CIFAR

_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
# CIFAR-10 classes: 0 airplane 1 automobile 2 bird 3 cat 4 deer 5 dog 6 frog 7 horse 8 ship 9 truck.
# CIFARtoy drops deer and frog; coarse 0 / 1 as the official code's two groupings.
CIFARTOY_GROUPS = {
    "good": ((0, 1, 8, 9), (2, 3, 5, 7)),  # vehicles vs animals
    "bad": ((0, 1, 5, 3), (8, 9, 2, 7)),  # {airplane, automobile, dog, cat} vs {ship, truck, bird, horse}
}


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # truncated or not a pickle
        raise ValueError(f"{path}: cannot read the pickle ({exc})") from exc


def _rows_to_hwc(data: np.ndarray, path: Path) -> np.ndarray:
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] % 3:
        raise ValueError(f"{path}: expected 'data' of shape [N, 3*S*S], got {data.shape}")
    side = int(round((data.shape[1] // 3) ** 0.5))
    if 3 * side * side != data.shape[1]:
        raise ValueError(f"{path}: rows of {data.shape[1]} values are not square RGB images")
    return data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)


class ArrayDataset(Dataset):
    """In-memory uint8 images ``[N, H, W, 3]`` with coarse and fine labels; item ``(PIL image, coarse, fine)``."""

    def __init__(self, images: np.ndarray, coarse: Sequence[int], fine: Sequence[int]) -> None:
        self.images = images
        self.coarse = np.asarray(coarse, dtype=np.int64)
        self.fine = np.asarray(fine, dtype=np.int64)
        if not (len(self.images) == len(self.coarse) == len(self.fine)):
            raise ValueError(f"lengths differ: {len(images)} images, {len(coarse)} coarse, {len(fine)} fine labels")

    def __len__(self) -> int:
        return len(self.coarse)

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        return Image.fromarray(self.images[i]), int(self.coarse[i]), int(self.fine[i])


def cifartoy(root: str | Path, grouping: str, train: bool, check_only: bool = False) -> ArrayDataset | None:
    """CIFARtoy: CIFAR-10 without deer and frog, coarse = the ``good`` or ``bad`` grouping of the 8 classes."""
    if grouping not in CIFARTOY_GROUPS:
        raise ValueError(f"CIFARtoy grouping must be 'good' or 'bad', got {grouping!r}")
    folder = Path(root) / "cifar-10-batches-py"
    names = _CIFAR10_TRAIN if train else ["test_batch"]
    _missing(
        f"cifartoy_{grouping}",
        [(folder / n, "CIFAR-10 python batch") for n in names],
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract into the data root)",
    )
    if check_only:
        return None
    images, labels = [], []
    for n in names:
        entry = _load_pickle(folder / n)
        images.append(_rows_to_hwc(entry["data"], folder / n))
        labels.extend(entry["labels"])
    images_np, labels_np = np.concatenate(images), np.asarray(labels)
    g0, g1 = CIFARTOY_GROUPS[grouping]
    keep = np.isin(labels_np, g0 + g1)
    fine = labels_np[keep]
    coarse = np.isin(fine, g1).astype(np.int64)
    return ArrayDataset(images_np[keep], coarse, fine)


def cifar100(root: str | Path, train: bool, check_only: bool = False) -> ArrayDataset | None:
    """CIFAR-100 with its 20 official superclasses as coarse labels and the 100 classes as fine labels."""
    folder = Path(root) / "cifar-100-python"
    name = "train" if train else "test"
    _missing(
        "cifar100",
        [(folder / name, "CIFAR-100 python pickle")],
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract into the data root)",
    )
    if check_only:
        return None
    entry = _load_pickle(folder / name)
    return ArrayDataset(_rows_to_hwc(entry["data"], folder / name), entry["coarse_labels"], entry["fine_labels"])


# ----------------------------------------------------------------------------------------- ImageNet32

IMAGENET32_MAPS = ("imagenet32_to_fine.json", "imagenet_fine_to_coarse.json")


def imagenet32_label_maps(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The official maps: ImageNet32 label (0-based) -> ImageNet-1k index, and ImageNet-1k index -> 12 coarse.

    Returns ``(to_fine [1000], fine_to_coarse [1000])`` as int arrays; fails naming the file on a bad entry.
    """
    folder = Path(folder)
    out = []
    for name in IMAGENET32_MAPS:
        path = folder / name
        try:
            table = json.loads(path.read_text())
        except Exception as exc:
            raise ValueError(f"{path}: cannot read the JSON map ({exc})") from exc
        if not isinstance(table, dict) or sorted(int(k) for k in table) != list(range(1000)):
            raise ValueError(f"{path}: expected a JSON object with the keys '0'..'999'")
        out.append(np.asarray([int(table[str(i)]) for i in range(1000)], dtype=np.int64))
    if sorted(out[0].tolist()) != list(range(1000)):
        raise ValueError(f"{folder / IMAGENET32_MAPS[0]}: not a permutation of 0..999")
    return out[0], out[1]


def imagenet32(root: str | Path, train: bool, check_only: bool = False) -> ArrayDataset | None:
    """Downsampled ImageNet 32x32 with the official 12 coarse classes (test = the 50k validation images)."""
    folder = Path(root) / "imagenet32"
    names = [f"train_data_batch_{i}" for i in range(1, 11)] if train else ["val_data"]
    _missing(
        "imagenet32",
        [(folder / n, "Downsampled ImageNet 32x32 pickle") for n in names]
        + [(folder / m, f"copy of MaskCon's coarse_labels/imagenet32/{m}") for m in IMAGENET32_MAPS],
        "https://image-net.org/download-images (Downsampled ImageNet 32x32) and the official MaskCon repository "
        "(github.com/MrChenFeng/MaskCon_CVPR2023, folder coarse_labels/imagenet32)",
    )
    if check_only:
        return None
    to_fine, to_coarse = imagenet32_label_maps(folder)
    images, labels = [], []
    for n in names:
        entry = _load_pickle(folder / n)
        images.append(_rows_to_hwc(entry["data"], folder / n))
        labels.extend(entry["labels"])
    lab = np.asarray(labels, dtype=np.int64) - 1  # the pickles count from 1
    if lab.min() < 0 or lab.max() > 999:
        raise ValueError(f"{folder}: labels outside 1..1000")
    fine = to_fine[lab]
    return ArrayDataset(np.concatenate(images), to_coarse[fine], fine)


# ------------------------------------------------------------------------------------------------ SOP


def read_sop_split(folder: str | Path, split: int, train: bool) -> tuple[list[str], list[int], list[int]]:
    """The official SOP split files ``sop_split{1,2}/{train,test}_{path,coarse_label,fine_label}.json``.

    Returns ``(relative image paths, coarse labels, fine labels)``, checked for equal lengths and integer labels.
    """
    sub = Path(folder) / f"sop_split{split}"
    part = "train" if train else "test"
    files = [sub / f"{part}_{n}.json" for n in ("path", "coarse_label", "fine_label")]
    loaded = []
    for f in files:
        try:
            loaded.append(json.loads(f.read_text()))
        except Exception as exc:
            raise ValueError(f"{f}: cannot read the JSON list ({exc})") from exc
        if not isinstance(loaded[-1], list):
            raise ValueError(f"{f}: expected a JSON list")
    paths, coarse, fine = loaded
    if not (len(paths) == len(coarse) == len(fine)):
        raise ValueError(f"{sub}: {part} files differ in length ({len(paths)}, {len(coarse)}, {len(fine)})")
    for f, vals in zip(files[1:], (coarse, fine)):
        bad = next((v for v in vals if not isinstance(v, int) or v < 0), None)
        if bad is not None:
            raise ValueError(f"{f}: label {bad!r} is not a non-negative integer")
    return paths, coarse, fine


class FileListDataset(Dataset):
    """Images read from files; item ``(PIL RGB image, coarse, fine)``. Unreadable files fail naming the file."""

    def __init__(self, root: str | Path, paths: Sequence[str], coarse: Sequence[int], fine: Sequence[int]) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.coarse = np.asarray(coarse, dtype=np.int64)
        self.fine = np.asarray(fine, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except Exception as exc:
            raise ValueError(f"{path}: cannot read the image ({exc})") from exc
        return image, int(self.coarse[i]), int(self.fine[i])


def sop(root: str | Path, split: int, train: bool, check_only: bool = False) -> FileListDataset | None:
    """Stanford Online Products with the official MaskCon split ``split`` (1 or 2) and 12 coarse classes."""
    if split not in (1, 2):
        raise ValueError(f"SOP split must be 1 or 2, got {split}")
    folder = Path(root) / "Stanford_Online_Products"
    part = "train" if train else "test"
    _missing(
        f"sop_split{split}",
        [(folder, "the Stanford Online Products images (folders bicycle_final/ ... toaster_final/)")]
        + [
            (folder / f"sop_split{split}" / f"{part}_{n}.json", f"copy of MaskCon's coarse_labels/sop_split{split}/")
            for n in ("path", "coarse_label", "fine_label")
        ],
        "https://cvgl.stanford.edu/projects/lifted_struct/ (Stanford_Online_Products.zip) and the official MaskCon "
        "repository (github.com/MrChenFeng/MaskCon_CVPR2023, folders coarse_labels/sop_split1 and sop_split2)",
    )
    paths, coarse, fine = read_sop_split(folder, split, train)
    if paths and not (folder / paths[0]).is_file():
        raise MissingDatasetError(
            f"data set 'sop_split{split}': {folder / paths[0]} is missing (the split files are there, the images "
            f"are not); extract Stanford_Online_Products.zip so that {folder}/<class>_final/ holds the images"
        )
    if check_only:
        return None
    return FileListDataset(folder, paths, coarse, fine)


# -------------------------------------------------------------------------------------------- Cars196


# The official code's 8 body types of the 196 Stanford Cars classes (0-based class ids).
def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split())


CARS196_BODY_TYPES: dict[str, tuple[int, ...]] = {
    "cab_pickup": _ids("52 53 64 68 69 73 74 85 86 89 90 105 110 112 113 121 123 124"),
    "sedan": _ids(
        "1 2 3 4 15 16 19 22 23 25 28 34 39 40 43 46 48 50 60 62 66 72 78 95 96 104 114 116 128 133 134 "
        "135 136 137 139 155 161 163 164 166 172 175 176 180 181 183 184 186 187 193"
    ),
    "suv": _ids(
        "0 31 32 36 47 49 51 57 59 61 67 75 88 93 94 108 109 117 119 120 130 131 132 141 142 144 145 146 "
        "147 148 153 154 158 185 188 194"
    ),
    "convertible": _ids(
        "7 9 11 20 26 30 35 37 38 44 54 55 56 58 76 79 80 99 101 102 106 122 143 151 156 157 160 174 178 195"
    ),
    "coupe": _ids("5 8 10 12 13 14 21 24 27 33 41 42 45 65 71 92 100 103 111 127 140 149 150 152 159 162 170 171 179"),
    "hatchback": _ids("6 18 97 98 129 138 167 169 177 182 189 190 191 192"),
    "wagon": _ids("17 29 81 82 83 91"),
    "van_minivan": _ids("63 70 77 84 87 107 115 118 125 126 165 168 173"),
}


def cars196_coarse_map() -> np.ndarray:
    """``[196]`` body-type index (0..7, in ``CARS196_BODY_TYPES`` order) of each Stanford Cars class."""
    out = np.full(196, -1, dtype=np.int64)
    for c, ids in enumerate(CARS196_BODY_TYPES.values()):
        out[list(ids)] = c
    return out


class _CoarseWrapped(Dataset):
    def __init__(self, base: Dataset, coarse_map: np.ndarray) -> None:
        self.base, self.coarse_map = base, coarse_map

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        image, fine = self.base[i]
        return image.convert("RGB"), int(self.coarse_map[fine]), int(fine)


def cars196(root: str | Path, train: bool, check_only: bool = False) -> Dataset | None:
    """Stanford Cars (torchvision layout, classification split 8,144/8,041) with 8 body types as coarse labels."""
    from torchvision.datasets import StanfordCars

    folder = Path(root) / "stanford_cars"
    part = "train" if train else "test"
    annos = "devkit/cars_train_annos.mat" if train else "cars_test_annos_withlabels.mat"
    _missing(
        "cars196",
        [
            (folder / "devkit" / "cars_meta.mat", "Stanford Cars devkit"),
            (folder / annos, "Stanford Cars annotations"),
            (folder / f"cars_{part}", f"Stanford Cars {part} images"),
        ],
        "Stanford Cars in torchvision's StanfordCars layout (its download URL is dead; use a mirror, e.g. Kaggle)",
    )
    if check_only:
        return None
    return _CoarseWrapped(StanfordCars(str(root), split=part, download=False), cars196_coarse_map())


# ------------------------------------------------------------------------------------------------ CSV


def read_label_csv(path: str | Path, need_fine: bool) -> tuple[list[str], list[int], list[int]]:
    """A user's coarse-labelled data: lines ``path,coarse[,fine]`` with an optional header line.

    Relative image paths are resolved against the CSV's folder. Fine labels are required when ``need_fine``
    (evaluation); missing ones are ``-1`` otherwise. Malformed lines fail together: one ``AnnotationError``
    lists each with its file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDatasetError(
            f"data set 'csv' is missing: {path} does not exist (a CSV with lines 'path,coarse,fine')"
        )
    paths, coarse, fine = [], [], []
    errors = LineErrors(path, expected="'path,coarse[,fine]' with integer labels, coarse >= 0")
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            errors.lines_seen = lineno
            if not row or all(not c.strip() for c in row):
                continue
            if lineno == 1 and row[0].strip().lower() in ("path", "image", "image_path", "file"):
                continue
            text = ",".join(row)
            if len(row) not in (2, 3):
                errors.add(lineno, f"expected 'path,coarse[,fine]', got {len(row)} fields", text)
                continue
            try:
                c = int(row[1])
                fl = int(row[2]) if len(row) == 3 and row[2].strip() else -1
            except ValueError as exc:
                errors.add(lineno, f"labels must be integers ({exc})", text)
                continue
            if c < 0:
                errors.add(lineno, f"coarse label {c} is negative", text)
                continue
            if need_fine and fl < 0:
                errors.add(lineno, "evaluation needs a fine label (third column)", text)
                continue
            p = Path(row[0].strip())
            paths.append(str(p if p.is_absolute() else path.parent / p))
            coarse.append(c)
            fine.append(fl)
    errors.raise_if_any()
    if not paths:
        raise AnnotationError(f"{path}: no samples")
    return paths, coarse, fine


# --------------------------------------------------------------------------------------------- digits

DIGIT_GROUPINGS: dict[str, tuple[int, ...]] = {
    # fine digit -> coarse class
    "parity": (0, 1, 0, 1, 0, 1, 0, 1, 0, 1),
    "shape3": (0, 1, 2, 2, 1, 2, 0, 1, 0, 0),  # {0,6,8,9} / {1,4,7} / {2,3,5}
    "fine": tuple(range(10)),
}


class DigitsCoarse(Dataset):
    """The bundled noisy digits with a coarse grouping; item ``(image tensor [1, S, S], coarse, fine)``."""

    def __init__(self, split: str, grouping: str = "shape3", canvas: int = 12, limit: int | None = None) -> None:
        from common.data.digits import NoisyDigits

        if grouping not in DIGIT_GROUPINGS:
            raise ValueError(f"unknown digits grouping {grouping!r}; choose from {sorted(DIGIT_GROUPINGS)}")
        self.base = NoisyDigits(split, canvas=canvas)
        self.map = DIGIT_GROUPINGS[grouping]
        self.n = len(self.base) if limit is None else min(limit, len(self.base))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        image, fine, _ = self.base[i]
        return image, self.map[fine], fine


# ------------------------------------------------------------------------------------------ transforms

_NORM = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_DATASET_STYLE = {  # (normalisation, image size, augmentation family)
    "cifartoy_good": ("cifar10", 32, "small"),
    "cifartoy_bad": ("cifar10", 32, "small"),
    "cifar100": ("cifar100", 32, "small"),
    "imagenet32": ("imagenet", 32, "small"),
    "sop_split1": ("imagenet", 224, "sop"),
    "sop_split2": ("imagenet", 224, "sop"),
    "cars196": ("imagenet", 224, "cars"),
    "csv": ("imagenet", 224, "sop"),
}


def image_transform(dataset: str, kind: str, image_size: int | None = None) -> Callable[[Any], Tensor]:
    """The official augmentation ``kind`` (``strong``, ``weak`` or ``test``) for a PIL-image data set."""
    norm, size, family = _DATASET_STYLE[dataset]
    size = image_size or size
    tail = [T.ToTensor(), T.Normalize(*_NORM[norm])]
    rrc = T.RandomResizedCrop(size, scale=(0.2, 1.0))
    if kind == "test":
        return T.Compose([T.Resize((size, size)), *tail])
    if kind == "weak":
        if family == "small":
            return T.Compose([rrc, T.RandomHorizontalFlip(), *tail])
        return T.Compose([rrc, T.RandomPerspective(0.5, p=0.5), T.RandomHorizontalFlip(), *tail])
    if kind != "strong":
        raise ValueError(f"augmentation must be 'strong', 'weak' or 'test', got {kind!r}")
    if family == "small":
        aa = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10, fill=[128, 128, 128])
        return T.Compose([rrc, T.RandomHorizontalFlip(), aa, *tail])
    if family == "sop":
        return T.Compose([rrc, T.RandomHorizontalFlip(), T.RandomPerspective(0.5, p=0.5), *tail])
    return T.Compose(
        [
            rrc,
            T.RandomHorizontalFlip(),
            T.RandomPerspective(0.5, p=0.5),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(0.2),
            T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
            *tail,
        ]
    )


def standardize(x: Tensor) -> Tensor:
    """Per-image zero mean, unit standard deviation: ``[C, H, W] -> [C, H, W]``."""
    return (x - x.mean()) / (x.std() + 1e-6)


class DigitAugment:
    """Tensor augmentation for the digits: random shift (zero fill), contrast, pixel dropout and noise, then per-image
    standardisation.

    ``[1, S, S]`` in [0, 1] -> same shape. The spec's CPU experiment: query = shift 2, contrast, 15 % dropout,
    noise 0.15; key = shift 1 only. The standardisation removes each rendered digit's random background level and
    contrast, which instance discrimination would otherwise latch on to (they identify an image without saying
    anything about its digit).
    """

    def __init__(self, shift: int = 1, contrast: float = 0.0, dropout: float = 0.0, noise: float = 0.0) -> None:
        self.shift, self.contrast, self.dropout, self.noise = shift, contrast, dropout, noise

    def __call__(self, x: Tensor) -> Tensor:
        if self.shift:
            dy, dx = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,)))
            x = torch.roll(x, (dy, dx), dims=(1, 2))
            if dy > 0:
                x[:, :dy] = 0
            elif dy < 0:
                x[:, dy:] = 0
            if dx > 0:
                x[:, :, :dx] = 0
            elif dx < 0:
                x[:, :, dx:] = 0
        if self.contrast:
            x = x * (1.0 + self.contrast * (2 * torch.rand(()) - 1))
        if self.dropout:
            x = x * (torch.rand_like(x) >= self.dropout)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return standardize(x)

    def __repr__(self) -> str:
        return f"DigitAugment(shift={self.shift}, contrast={self.contrast}, dropout={self.dropout}, noise={self.noise})"


DIGIT_AUGMENTS = {
    "strong": DigitAugment(shift=2, contrast=0.3, dropout=0.15, noise=0.15),
    "weak": DigitAugment(shift=1),
    "test": standardize,
}


# ------------------------------------------------------------------------------------ wrappers, sampler


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729 + 0x5EED) % (2**63 - 1)


class TwoViewDataset(Dataset):
    """Training items ``((key_view, query_view), coarse, fine, index)`` with reproducible augmentation.

    Each item's views are drawn with the global CPU generator seeded by f(seed, epoch, index) inside ``fork_rng``, so they
    depend on neither the global RNG nor the worker, and a resumed run sees the same views (``set_epoch``).
    """

    def __init__(self, base: Dataset, key_t: Callable | None, query_t: Callable | None, seed: int = 0) -> None:
        self.base, self.key_t, self.query_t, self.seed = base, key_t, query_t, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[tuple[Tensor, Tensor], int, int, int]:
        image, coarse, fine = self.base[i]
        with torch.random.fork_rng(devices=[]):
            # the generator's own manual_seed: torch.manual_seed also records a stack trace (slow per item)
            torch.default_generator.manual_seed(_item_seed(self.seed, self.epoch, i))
            k = self.key_t(image) if self.key_t else image
            q = self.query_t(image) if self.query_t else image
        return (k, q), coarse, fine, i


class EvalDataset(Dataset):
    """Evaluation items ``(image, coarse, fine, index)`` with a deterministic transform."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int, int, int]:
        image, coarse, fine = self.base[i]
        return (self.transform(image) if self.transform else image), coarse, fine, i


# ------------------------------------------------------------------------------------------ data module


class MaskConDataModule(LightningDataModule):
    """Coarse-labelled training data (two views) and the fine-labelled test split for retrieval.

    Args:
        dataset: one of ``DATASETS``.
        data_root: folder holding the data sets (see the module docstring for the layout).
        batch_size: the global batch (split evenly over DDP ranks; the official recipe uses 128).
        num_workers: data-loader workers per rank.
        aug_q / aug_k: ``strong`` or ``weak`` augmentation of the query / key view (official: strong / weak).
        image_size: overrides the data set's image size (32 or 224).
        train_csv / test_csv: the files of ``dataset: csv``.
        digits_grouping / digits_canvas: the coarse grouping (``parity``, ``shape3``, ``fine``) and canvas size
            of ``dataset: digits``.
        limit_train / limit_test: use only the first N items (tests, quick looks).
        seed: seed of the shuffling order and of the augmentations.
        shuffle: shuffle the training set (off only in tests that need a fixed order).
        val_split: the split used for validation; the official code evaluates retrieval on the test split.
    """

    def __init__(
        self,
        dataset: str = "cifartoy_good",
        data_root: str = "data",
        batch_size: int = 128,
        num_workers: int = 4,
        aug_q: str = "strong",
        aug_k: str = "weak",
        image_size: int | None = None,
        train_csv: str | None = None,
        test_csv: str | None = None,
        digits_grouping: str = "shape3",
        digits_canvas: int = 12,
        limit_train: int | None = None,
        limit_test: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown data set {dataset!r}; choose from {DATASETS}")
        for name, aug in (("aug_q", aug_q), ("aug_k", aug_k)):
            if aug not in ("strong", "weak"):
                raise ValueError(f"{name} must be 'strong' or 'weak', got {aug!r}")
        self.save_hyperparameters()
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # -- the base data sets
    def base_dataset(self, train: bool, check_only: bool = False) -> Dataset | None:
        """The ``(image, coarse, fine)`` data set of the train or test split (raises ``MissingDatasetError``).

        With ``check_only`` only the presence of the files is checked (nothing is loaded) and None is returned.
        """
        h = self.hparams
        root = Path(os.path.expanduser(h.data_root))
        name = h.dataset
        if name.startswith("cifartoy_"):
            return cifartoy(root, name.split("_", 1)[1], train, check_only)
        if name == "cifar100":
            return cifar100(root, train, check_only)
        if name == "imagenet32":
            return imagenet32(root, train, check_only)
        if name.startswith("sop_split"):
            return sop(root, int(name[-1]), train, check_only)
        if name == "cars196":
            return cars196(root, train, check_only)
        if name == "csv":
            path = h.train_csv if train else h.test_csv
            if path is None:
                raise MissingDatasetError(
                    f"data set 'csv' needs data.{'train_csv' if train else 'test_csv'}: a CSV of 'path,coarse,fine'"
                )
            paths, coarse, fine = read_label_csv(path, need_fine=not train)
            return None if check_only else FileListDataset("/", paths, coarse, fine)
        if check_only:
            return None
        return DigitsCoarse("train" if train else "test", h.digits_grouping, h.digits_canvas)

    def require(self, train: bool = True, test: bool = True) -> None:
        """Raise one ``MissingDatasetError`` listing every absent file of the train and/or the test split."""
        errors = []
        for split in [t for t, want in ((True, train), (False, test)) if want]:
            try:
                self.base_dataset(split, check_only=True)
            except MissingDatasetError as exc:
                errors.append(exc)
        if not errors:
            return
        if not all(e.absent for e in errors):  # a message without a file list (e.g. csv paths not given)
            raise MissingDatasetError("\n".join(dict.fromkeys(str(e) for e in errors)))
        absent = list(dict.fromkeys(a for e in errors for a in e.absent))
        raise MissingDatasetError(
            _missing_message(errors[0].dataset, absent, errors[0].source), errors[0].dataset, absent
        )

    def transforms(self, kind: str) -> Callable | None:
        if self.hparams.dataset == "digits":
            return DIGIT_AUGMENTS[kind]
        return image_transform(self.hparams.dataset, kind, self.hparams.image_size)

    @property
    def num_coarse(self) -> int | None:
        """Number of coarse classes of the training set (after ``setup``)."""
        if self.train_set is None:
            return None
        return int(np.max(_labels_of(self.train_set.base)[0])) + 1

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None and self.test_set is None:
            self.require(train=stage in (None, "fit"))
        if stage in (None, "fit") and self.train_set is None:
            base = _limited(self.base_dataset(train=True), h.limit_train)
            self.train_set = TwoViewDataset(base, self.transforms(h.aug_k), self.transforms(h.aug_q), seed=h.seed)
        if self.test_set is None:
            base = _limited(self.base_dataset(train=False), h.limit_test)
            self.test_set = EvalDataset(base, self.transforms("test"))

    def _world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 1, 0
        return int(self.trainer.world_size), int(self.trainer.global_rank)

    def _per_rank_batch(self, batch: int) -> int:
        world, _ = self._world()
        if batch % world:
            raise ValueError(f"batch_size {batch} is not divisible by the {world} DDP ranks")
        return batch // world

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        h = self.hparams
        world, rank = self._world()
        sampler = ResumableSampler(self.train_set, seed=h.seed, shuffle=h.shuffle, num_replicas=world, rank=rank)
        loader = ResumableDataLoader(
            self.train_set,
            batch_size=self._per_rank_batch(h.batch_size),
            sampler=sampler,
            num_workers=h.num_workers,
            drop_last=True,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )
        if self.trainer is not None:
            loader.progress = lambda: trainer_progress(self.trainer)
        return loader

    def _eval_loader(self) -> DataLoader:
        assert self.test_set is not None
        h = self.hparams
        bs = self._per_rank_batch(h.eval_batch_size or h.batch_size)
        return DataLoader(self.test_set, batch_size=bs, shuffle=False, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()


def _limited(ds: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(ds):  # type: ignore[arg-type]
        return ds
    return torch.utils.data.Subset(ds, range(limit))


def _labels_of(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(coarse, fine) label arrays of a base data set without decoding images where possible."""
    if isinstance(ds, torch.utils.data.Subset):
        c, f = _labels_of(ds.dataset)
        idx = np.asarray(list(ds.indices))
        return c[idx], f[idx]
    if isinstance(ds, (ArrayDataset, FileListDataset)):
        return ds.coarse, ds.fine
    if isinstance(ds, DigitsCoarse):
        fine = ds.base.targets.numpy()[: ds.n]
        return np.asarray(ds.map)[fine], fine
    if isinstance(ds, _CoarseWrapped):
        fine = np.asarray([t for _, t in ds.base._samples])  # type: ignore[attr-defined]
        return ds.coarse_map[fine], fine
    items = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
    return np.asarray([c for _, c, _ in items]), np.asarray([f for _, _, f in items])


def dataset_status(dataset: str, data_root: str = "data", **kwargs: Any) -> str | None:
    """``None`` when ``dataset``'s train and test files are in place, else one message saying what is missing."""
    try:
        MaskConDataModule(dataset=dataset, data_root=data_root, **kwargs).require()
    except MissingDatasetError as exc:
        return str(exc)
    return None
