"""DFEW / FERV39k / MAFW clips as the official DFER-CLIP loader reads them, plus raw videos for prediction.

Annotation files hold one clip per line, ``<frame_dir> <num_frames> <label>``, with the authors' absolute paths;
``data_root`` rewrites them (the last path components that identify a clip are kept: ``<id>`` for DFEW and
MAFW, ``<scene>/<emotion>/<id>`` for FERV39k), or ``old_prefix`` is replaced by ``data_root`` as the official
``annotation/preprocessing.py`` does. A clip is ``T`` frames picked as the official code: training takes a
random frame in each of ``T`` equal segments, test the segment centres; clips shorter than ``T`` are padded with
their last frame. Frames are ``sorted(folder)`` image files; when an annotation's count disagrees with the
folder, the folder wins (one warning gives the number of such clips).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from common.errors import AnnotationError, LineErrors, MediaError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class DatasetSpec:
    """Annotation file names (``{fold}`` filled in), class count, path components kept when re-rooting."""

    train_file: str
    test_file: str
    num_classes: int
    keep_components: int
    augment: str
    num_folds: int


DATASETS: dict[str, DatasetSpec] = {
    "dfew": DatasetSpec("DFEW_set_{fold}_train.txt", "DFEW_set_{fold}_test.txt", 7, 1, "dfew", 5),
    "ferv39k": DatasetSpec("FERV39K_train.txt", "FERV39K_test.txt", 7, 3, "ferv39k", 1),
    "mafw": DatasetSpec("MAFW_set_{fold}_train.txt", "MAFW_set_{fold}_test.txt", 11, 1, "mafw", 5),
}
AUGMENTATIONS = ("dfew", "ferv39k", "mafw", "flip", "none")


@dataclass(frozen=True)
class ClipRecord:
    """One annotated clip: its frame folder, annotated frame count, label and where it was read from."""

    path: Path
    num_frames: int
    label: int
    source: str = ""


def rewrite_path(
    path: str, data_root: str | os.PathLike | None, keep_components: int = 1, old_prefix: str | None = None
) -> Path:
    """Map an annotation path onto this machine.

    ``old_prefix`` given: ``path`` must start with it and it is replaced by ``data_root``. Otherwise the last
    ``keep_components`` components are joined to ``data_root``. ``data_root`` None keeps ``path``.
    """
    if data_root is None:
        return Path(path)
    if old_prefix is not None:
        if not path.startswith(old_prefix):
            raise ValueError(f"path {path!r} does not start with old_prefix {old_prefix!r}")
        return Path(data_root) / path[len(old_prefix) :].lstrip("/")
    parts = Path(path).parts
    if len(parts) < keep_components:
        raise ValueError(f"path {path!r} has fewer than {keep_components} components")
    return Path(data_root).joinpath(*parts[-keep_components:])


def parse_annotation(
    file: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    keep_components: int = 1,
    old_prefix: str | None = None,
    num_classes: int | None = None,
) -> list[ClipRecord]:
    """Read an annotation file (``<frame_dir> <num_frames> <label>`` per line; blank lines skip).

    Every malformed line is collected; one ``AnnotationError`` then lists them all with their line numbers
    (up to 20, then how many more), so a file is fixed in one pass.
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"annotation file not found: {file}")
    records = []
    labels = f"[0, {num_classes})" if num_classes is not None else ">= 0"
    errors = LineErrors(file, expected=f"'<frame_dir> <num_frames> <label>' with num_frames >= 1 and label in {labels}")
    with open(file) as f:
        for i, line in enumerate(f, 1):
            errors.lines_seen = i
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 3:
                errors.add(i, f"{len(fields)} fields, expected 3", line)
                continue
            try:
                n, label = int(fields[1]), int(fields[2])
            except ValueError:
                errors.add(i, "frame count and label must be integers", line)
                continue
            if n < 1:
                errors.add(i, f"frame count {n} < 1", line)
            elif label < 0 or (num_classes is not None and label >= num_classes):
                errors.add(i, f"label {label} outside {labels}", line)
            else:
                try:
                    path = rewrite_path(fields[0], data_root, keep_components, old_prefix)
                except ValueError as e:
                    errors.add(i, str(e), line)
                    continue
                records.append(ClipRecord(path, n, label, f"{file}:{i}"))
    errors.raise_if_any()
    if not records:
        raise AnnotationError(f"{file}: no clips (the file has no non-blank line)")
    return records


def class_counts(records: Sequence[ClipRecord], num_classes: int) -> list[int]:
    """Number of clips per label."""
    counts = [0] * num_classes
    for r in records:
        counts[r.label] += 1
    return counts


def sample_indices(
    num_frames: int, num_segments: int, train: bool, rng: np.random.Generator | None = None
) -> list[int]:
    """Frame indices of one clip, exactly as the official loader (``duration`` 1).

    Train: ``avg = N // T``; when ``avg > 0``, ``i * avg + randint(avg)`` (frames past ``T * avg`` unused).
    Test: when ``N > T``, ``int(N/T/2 + N/T * i)``. Otherwise ``0..N-1`` padded with ``N-1`` to length ``T``.
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    if train:
        avg = num_frames // num_segments
        if avg > 0:
            rng = rng if rng is not None else np.random.default_rng()
            return [i * avg + int(o) for i, o in enumerate(rng.integers(0, avg, size=num_segments))]
    elif num_frames > num_segments:
        tick = num_frames / float(num_segments)
        return [int(tick / 2.0 + tick * i) for i in range(num_segments)]
    return [min(i, num_frames - 1) for i in range(num_segments)]


class GroupAugment:
    """Training augmentation of a clip (list of PIL images); every random choice is shared by all frames.

    ``dfew``: brightness jitter 0.5 -> random sized crop -> flip; ``ferv39k``: rotation +-4 deg -> crop -> flip;
    ``mafw``: crop -> flip; ``flip``: resize -> flip; ``none``: resize. The crop is the Inception-style one of
    the official code (area 8-100 %, aspect 3/4-4/3 with a 50 % swap, 10 tries, else shorter-side resize and a
    random crop), resized bilinearly to ``size x size``.
    """

    def __init__(self, kind: str, size: int) -> None:
        if kind not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {kind!r}; choose one of {AUGMENTATIONS}")
        self.kind, self.size = kind, size

    def _sized_crop(self, frames: list[Image.Image]) -> list[Image.Image]:
        w0, h0 = frames[0].size
        for _ in range(10):
            area = random.uniform(0.08, 1.0) * w0 * h0
            ratio = random.uniform(3.0 / 4, 4.0 / 3)
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if random.random() < 0.5:
                w, h = h, w
            if w <= w0 and h <= h0:
                x, y = random.randint(0, w0 - w), random.randint(0, h0 - h)
                return [f.crop((x, y, x + w, y + h)).resize((self.size, self.size), Image.BILINEAR) for f in frames]
        s = self.size
        scaled = [TF.resize(f, s, interpolation=TF.InterpolationMode.BILINEAR) for f in frames]
        w1, h1 = scaled[0].size
        x, y = random.randint(0, w1 - s), random.randint(0, h1 - s)
        return [f.crop((x, y, x + s, y + s)) for f in scaled]

    def __call__(self, frames: list[Image.Image]) -> list[Image.Image]:
        if self.kind == "dfew":
            factor = random.uniform(0.5, 1.5)
            frames = [TF.adjust_brightness(f, factor) for f in frames]
        elif self.kind == "ferv39k":
            angle = random.uniform(-4.0, 4.0)
            frames = [f.rotate(angle) for f in frames]
        if self.kind in ("dfew", "ferv39k", "mafw"):
            frames = self._sized_crop(frames)
        else:
            frames = [f.resize((self.size, self.size), Image.BILINEAR) for f in frames]
        if self.kind != "none" and random.random() < 0.5:
            frames = [f.transpose(Image.FLIP_LEFT_RIGHT) for f in frames]
        return frames


def frames_to_tensor(frames: Sequence[Image.Image | np.ndarray], normalize: bool = False) -> Tensor:
    """PIL images / uint8 HWC arrays -> float ``[T, 3, H, W]`` in [0, 1] (CLIP mean/std applied if ``normalize``)."""
    arr = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    if normalize:
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


def list_frames(folder: Path) -> list[str]:
    """Sorted image file names in ``folder`` (the official loader's ``sorted(glob(folder/*))``)."""
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))


def load_image(path: Path, what: str) -> Image.Image:
    """An RGB PIL image, fully decoded; failures raise ``MediaError`` (a ``RuntimeError``) naming ``what`` (the
    clip) and the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises many types; re-raised with the clip named
        raise MediaError(f"{what}: cannot read frame {path.name} ({type(e).__name__}: {e})") from e


class ClipDataset(Dataset):
    """Annotated frame-folder clips -> ``(video [T, 3, S, S] float in [0,1], label, index)``.

    Every folder is listed at construction: missing/empty folders raise ``FileNotFoundError`` naming them;
    clips whose annotated count differs from the folder use the folder's count (one warning with the count).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        num_frames: int = 16,
        image_size: int = 224,
        train: bool = False,
        augment: str = "none",
        normalize: bool = False,
    ) -> None:
        self.records = list(records)
        self.num_frames, self.image_size, self.train, self.normalize = num_frames, image_size, train, normalize
        self.augment = GroupAugment(augment, image_size) if train else None
        self.frame_files: list[list[str]] = []
        missing, empty, mismatched = [], [], 0
        for r in self.records:
            try:
                files = list_frames(r.path)
            except (FileNotFoundError, NotADirectoryError):
                missing.append(r)
                files = []
            if not files and r not in missing:
                empty.append(r)
            if files and len(files) != r.num_frames:
                mismatched += 1
            self.frame_files.append(files)
        bad = [f"missing frame folder {r.path} ({r.source})" for r in missing]
        bad += [f"no image files in {r.path} ({r.source})" for r in empty]
        if bad:
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise FileNotFoundError(f"{len(bad)} clip(s) unusable:\n  " + "\n  ".join(bad[:5]) + more)
        self.num_mismatched = mismatched
        if mismatched:
            warnings.warn(
                f"{mismatched} of {len(self.records)} clips have a frame count in the annotation that differs "
                "from their folder; the folder's count is used",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.records)

    def indices(self, index: int, rng: np.random.Generator | None = None) -> list[int]:
        """The frame indices sampled for clip ``index`` (folder frame count)."""
        return sample_indices(len(self.frame_files[index]), self.num_frames, self.train, rng)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        r = self.records[index]
        files = self.frame_files[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None
        frames = [load_image(r.path / files[i], f"clip {r.path}") for i in self.indices(index, rng)]
        if len({f.size for f in frames}) > 1:
            raise MediaError(f"clip {r.path}: frames have different sizes {sorted({f.size for f in frames})}")
        if self.augment is not None:
            frames = self.augment(frames)
        else:
            frames = [f.resize((self.image_size, self.image_size), Image.BILINEAR) for f in frames]
        return frames_to_tensor(frames, self.normalize), r.label, index


def crop_box(frame: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Square-ish crop of ``frame [H,W,3]`` at ``box`` (x1, y1, x2, y2), enlarged by ``margin``, clipped."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1 = max(0, int(round(x1 - dx))), max(0, int(round(y1 - dy)))
    x2, y2 = min(w, int(round(x2 + dx))), min(h, int(round(y2 + dy)))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty face box {box.tolist()} for a {w}x{h} frame")
    return frame[y1:y2, x1:x2]


class RawVideoDataset(Dataset):
    """Video files / frame folders for prediction -> ``(video [T, 3, S, S], -1, index)``.

    The test sampling picks ``T`` frames; with ``detect_faces`` each picked frame is cropped to its MTCNN face
    box (frames without a face raise ``NoFaceError`` naming the input and frame), as the datasets hold face crops.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        num_frames: int = 16,
        image_size: int = 224,
        detect_faces: bool = True,
        face_margin: float = 0.0,
        normalize: bool = False,
        device: str = "cpu",
    ) -> None:
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"no video file or frame folder at {p}")
        self.num_frames, self.image_size, self.normalize = num_frames, image_size, normalize
        self.detect_faces, self.face_margin, self.device = detect_faces, face_margin, device
        self._detector = None

    def __len__(self) -> int:
        return len(self.paths)

    def _detector_(self):
        if self._detector is None:
            from common.face.detect import FaceDetector

            self._detector = FaceDetector(device=self.device)
        return self._detector

    def _sampled_frames(self, path: Path) -> tuple[dict[int, np.ndarray], list[int], str]:
        """The frames at the test-time indices; a video is decoded twice (count, then keep) to bound memory."""
        if path.is_dir():
            files = list_frames(path)
            if not files:
                raise FileNotFoundError(f"no image files in frame folder {path}")
            idx = sample_indices(len(files), self.num_frames, train=False)
            what = f"frame folder {path}"
            return {i: np.asarray(load_image(path / files[i], what)) for i in set(idx)}, idx, what
        from common.data.video import iter_video

        n = sum(1 for _ in iter_video(path))
        if n == 0:
            raise ValueError(f"video {path}: no decodable frames")
        idx = sample_indices(n, self.num_frames, train=False)
        wanted = set(idx)
        return {i: f for i, f in enumerate(iter_video(path)) if i in wanted}, idx, f"video {path}"

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        frames, indices, what = self._sampled_frames(self.paths[index])
        detector = self._detector_() if self.detect_faces else None
        picked = [
            face_crop(frames[i], detector, f"{what}, frame {i}", self.image_size, self.face_margin) for i in indices
        ]
        return frames_to_tensor(picked, self.normalize), -1, index


def face_crop(frame: np.ndarray, detector, what: str, image_size: int, margin: float = 0.0) -> Image.Image:
    """The model's view of one frame ``[H,W,3]``: the MTCNN face box crop (``detector`` None: the whole frame)
    resized to ``image_size``; a frame without a face raises ``NoFaceError`` naming ``what``."""
    if detector is not None:
        det = detector.detect(frame, require=True, source=what)
        frame = crop_box(frame, det.box, margin)
    return Image.fromarray(np.ascontiguousarray(frame)).resize((image_size,) * 2, Image.BILINEAR)


def holdout_split(
    records: Sequence[ClipRecord], fraction: float, seed: int = 0
) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Stratified deterministic split of training clips into (train, validation); ``fraction`` per class."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(r.label, []).append(i)
    val_idx: set[int] = set()
    for idx in by_label.values():
        k = int(round(fraction * len(idx)))
        val_idx.update(rng.permutation(idx)[:k].tolist())
    return [r for i, r in enumerate(records) if i not in val_idx], [r for i, r in enumerate(records) if i in val_idx]


class DFERDataModule(LightningDataModule):
    """DFEW (5 folds), FERV39k (one split) or MAFW (5 folds) from annotation files and face-frame folders.

    ``val_split``: ``"none"`` (the default, honest protocol: train on the whole training fold, test the last
    epoch), ``"holdout"`` (a stratified ``val_fraction`` of the training fold for validation and checkpoint
    selection), ``"test"`` (the official protocol: validate on the test fold every epoch so the best-test-WAR
    checkpoint can be picked; for reproducing the paper's numbers only). ``predict_inputs``: video files or
    frame folders for ``predict`` (faces detected per frame); without them ``predict`` runs on the test fold.
    """

    def __init__(
        self,
        dataset: str = "dfew",
        annotation_dir: str = "data/dferclip/annotation",
        data_root: str | None = None,
        old_prefix: str | None = None,
        fold: int = 1,
        train_annotation: str | None = None,
        test_annotation: str | None = None,
        num_frames: int = 16,
        image_size: int = 224,
        batch_size: int = 48,
        eval_batch_size: int | None = None,
        num_workers: int = 8,
        augment: str | None = None,
        normalize: bool = False,
        val_split: str = "none",
        val_fraction: float = 0.1,
        predict_inputs: list[str] | None = None,
        detect_faces: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
        spec = DATASETS[dataset]
        if not 1 <= fold <= spec.num_folds:
            raise ValueError(f"{dataset} has folds 1..{spec.num_folds}, got fold={fold}")
        if val_split not in ("none", "holdout", "test"):
            raise ValueError(f"val_split must be 'none', 'holdout' or 'test', got {val_split!r}")
        self.save_hyperparameters()
        self.spec = spec
        self.num_classes = spec.num_classes
        self.augment = augment or spec.augment
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_set = self.val_set = self.test_set = self.predict_set = None

    def annotation_files(self) -> dict[str, Path]:
        """The train and test annotation files this configuration reads."""
        hp = self.hparams
        d = Path(hp.annotation_dir)
        return {
            "train": Path(hp.train_annotation)
            if hp.train_annotation
            else d / self.spec.train_file.format(fold=hp.fold),
            "test": Path(hp.test_annotation) if hp.test_annotation else d / self.spec.test_file.format(fold=hp.fold),
        }

    def _records(self, split: str) -> list[ClipRecord]:
        hp = self.hparams
        return parse_annotation(
            self.annotation_files()[split], hp.data_root, self.spec.keep_components, hp.old_prefix, self.num_classes
        )

    def _clips(self, records: Sequence[ClipRecord], train: bool) -> ClipDataset:
        hp = self.hparams
        return ClipDataset(records, hp.num_frames, hp.image_size, train, self.augment, hp.normalize)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in ("fit", None) and self.train_set is None:
            train = self._records("train")
            if hp.val_split == "holdout":
                train, val = holdout_split(train, hp.val_fraction)
                self.val_set = self._clips(val, train=False)
            elif hp.val_split == "test":
                self.val_set = self.test_set = self.test_set or self._clips(self._records("test"), train=False)
            self.train_set = self._clips(train, train=True)
        if stage == "validate" and self.val_set is None:
            if hp.val_split == "holdout":
                self.val_set = self._clips(holdout_split(self._records("train"), hp.val_fraction)[1], train=False)
            else:
                self.val_set = self.test_set = self.test_set or self._clips(self._records("test"), train=False)
        if stage in ("test", None) and self.test_set is None:
            self.test_set = self._clips(self._records("test"), train=False)
        if stage == "predict" and self.predict_set is None:
            if hp.predict_inputs:
                self.predict_set = RawVideoDataset(
                    hp.predict_inputs, hp.num_frames, hp.image_size, hp.detect_faces, normalize=hp.normalize
                )
            else:
                self.predict_set = self.test_set or self._clips(self._records("test"), train=False)

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            ds,
            batch_size=hp.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=hp.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False)
