"""Annotation parsing on the real DFEW / FERV39k / MAFW files, re-rooting, folds, clip loading and its errors."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projects.dferclip.data import (
    DATASETS,
    ClipDataset,
    ClipRecord,
    DFERDataModule,
    GroupAugment,
    class_counts,
    holdout_split,
    parse_annotation,
    rewrite_path,
)

ANN = "zengqunzhao_DFER-CLIP/annotation"


def _load(shared_data, name, spec="dfew", root=None):
    s = DATASETS[spec]
    return parse_annotation(shared_data / ANN / name, root, s.keep_components, num_classes=s.num_classes)


def test_dfew_folds(shared_data):
    tests = [_load(shared_data, f"DFEW_set_{k}_test.txt") for k in range(1, 6)]
    trains = [_load(shared_data, f"DFEW_set_{k}_train.txt") for k in range(1, 6)]
    assert [len(t) for t in tests] == [2341, 2341, 2340, 2339, 2336]
    all_ids = set()
    for k in range(5):
        test_ids, train_ids = {r.path for r in tests[k]}, {r.path for r in trains[k]}
        assert not test_ids & train_ids and len(test_ids | train_ids) == 11697
        assert not all_ids & test_ids  # test folds are disjoint
        all_ids |= test_ids
    assert len(all_ids) == 11697
    assert class_counts(tests[0], 7) == [489, 379, 534, 435, 294, 29, 181]
    n = [r.num_frames for t in tests for r in t]
    assert min(n) == 11 and max(n) == 847


def test_ferv39k_and_mafw(shared_data):
    train, test = _load(shared_data, "FERV39K_train.txt", "ferv39k"), _load(shared_data, "FERV39K_test.txt", "ferv39k")
    assert (len(train), len(test)) == (31088, 7847)
    assert class_counts(test, 7) == [1473, 1393, 1958, 1487, 638, 467, 431]
    n = [r.num_frames for r in train + test]
    assert (min(n), max(n)) == (8, 47)
    assert sum(r.num_frames < 16 for r in test) == 813
    mafw = [_load(shared_data, f"MAFW_set_{k}_test.txt", "mafw") for k in range(1, 6)]
    assert [len(t) for t in mafw] == [1839, 1837, 1833, 1832, 1831]
    assert len({r.path for t in mafw for r in t}) == 9172
    assert class_counts(mafw[0], 11) == [249, 294, 228, 278, 215, 128, 125, 48, 184, 53, 37]


def test_root_rewriting(shared_data, tmp_path):
    dfew = _load(shared_data, "DFEW_set_1_train.txt", root=tmp_path)
    assert dfew[0].path == tmp_path / "02522" and dfew[0].num_frames == 66 and dfew[0].label == 5
    ferv = _load(shared_data, "FERV39K_test.txt", "ferv39k", root=tmp_path)
    assert ferv[0].path == tmp_path / "Action" / "Happy" / "0015"
    old = "/data/EECS-IoannisLab/datasets/MAFW/data/faces"
    assert rewrite_path(old + "/00025", "/x/faces", old_prefix=old) == Path("/x/faces/00025")
    with pytest.raises(ValueError, match="does not start with"):
        rewrite_path("/other/00025", "/x", old_prefix=old)


def test_bad_annotation_lines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("/a/1 10 0\n/a/2 ten 1\n")
    with pytest.raises(ValueError, match=r"a\.txt:2: frame count and label must be integers"):
        parse_annotation(f)
    f.write_text("/a/1 10 9\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: label 9 outside"):
        parse_annotation(f, num_classes=7)
    f.write_text("/a/1 10\n")
    with pytest.raises(ValueError, match="expected"):
        parse_annotation(f)


def test_every_bad_annotation_line_in_one_error(tmp_path):
    from common.errors import AnnotationError

    f = tmp_path / "train.txt"
    good = "/a/ok 10 1\n"
    bad = ["/a/2 ten 1", "/a/3 10", "/a/4 0 2", "/a/5 10 9"] + [f"/a/x{i} 5 -1" for i in range(30)]
    f.write_text(good + "\n".join(bad) + "\n" + good)
    with pytest.raises(AnnotationError) as err:
        parse_annotation(f, num_classes=7)
    msg = str(err.value)
    assert msg.startswith(f"{f}: 34 bad lines (of 36)")
    assert f"{f}:2: frame count and label must be integers: '/a/2 ten 1'" in msg
    assert f"{f}:3: 2 fields, expected 3" in msg and f"{f}:4: frame count 0 < 1" in msg
    assert f"{f}:5: label 9 outside [0, 7)" in msg and f"{f}:21:" in msg
    assert f"{f}:22:" not in msg and "and 14 more" in msg  # 20 listed


def _write_clip(folder: Path, n: int, size: int = 20, value=None):
    folder.mkdir(parents=True)
    for i in range(n):
        v = i * 10 if value is None else value
        Image.fromarray(np.full((size, size + 4, 3), v, np.uint8)).save(folder / f"{i + 1:05d}.png")


def test_folder_count_wins_with_one_warning(tmp_path):
    _write_clip(tmp_path / "c1", 5)
    _write_clip(tmp_path / "c2", 6)
    _write_clip(tmp_path / "c3", 4)
    recs = [ClipRecord(tmp_path / "c1", 16, 0), ClipRecord(tmp_path / "c2", 3, 1), ClipRecord(tmp_path / "c3", 4, 2)]
    with pytest.warns(UserWarning, match="^2 of 3 clips have a frame count") as rec:
        ds = ClipDataset(recs, num_frames=4, image_size=8, train=False)
    assert len(rec) == 1 and ds.num_mismatched == 2
    assert ds.indices(0) == [0, 1, 3, 4]  # annotation says 16, folder has 5: int(0.625 + 1.25 i)
    assert ds.indices(1) == [0, 2, 3, 5]  # 6 frames (annotation: 3): int(0.75 + 1.5 i)
    video, label, idx = ds[0]
    assert video.shape == (4, 3, 8, 8) and label == 0 and idx == 0
    # no normalisation: frame i has value 10 i / 255, kept by a plain resize
    torch.testing.assert_close(video[:, 0, 0, 0], torch.tensor([0, 10, 30, 40]) / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClipDataset(recs[2:], num_frames=4, image_size=8)  # counts agree: no warning


def test_missing_folder_and_unreadable_frame(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing frame folder .*nowhere \(ann\.txt:3\)"):
        ClipDataset([ClipRecord(tmp_path / "nowhere", 8, 0, "ann.txt:3")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files in"):
        ClipDataset([ClipRecord(tmp_path / "empty", 8, 0)])
    _write_clip(tmp_path / "bad", 3)
    (tmp_path / "bad" / "00002.png").write_bytes(b"not a png")
    ds = ClipDataset([ClipRecord(tmp_path / "bad", 3, 0)], num_frames=3, image_size=8)
    with pytest.raises(RuntimeError, match=r"clip .*bad: cannot read frame 00002\.png"):
        ds[0]


def test_augmentation_shares_parameters_across_frames(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    for kind in ("dfew", "ferv39k", "mafw", "flip"):
        outs = set()
        for seed in range(4):
            torch.manual_seed(seed)
            import random

            random.seed(seed)
            frames = GroupAugment(kind, 16)([img.copy() for _ in range(5)])
            arrs = [np.asarray(f) for f in frames]
            assert all(a.shape == (16, 16, 3) for a in arrs)
            assert all(np.array_equal(arrs[0], a) for a in arrs[1:]), kind  # identical frames stay identical
            outs.add(arrs[0].tobytes())
        assert len(outs) > 1, kind  # but the parameters are random from clip to clip
    with pytest.raises(ValueError, match="unknown augmentation"):
        GroupAugment("bogus", 16)


def test_normalize_option_and_holdout(tmp_path):
    _write_clip(tmp_path / "c", 4, value=255)
    ds = ClipDataset([ClipRecord(tmp_path / "c", 4, 0)], num_frames=2, image_size=8, normalize=True)
    torch.testing.assert_close(ds[0][0][0, :, 0, 0], (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073]))
                               / torch.tensor([0.26862954, 0.26130258, 0.27577711]))  # fmt: skip
    recs = [ClipRecord(Path(f"/c{i}"), 10, i % 2) for i in range(40)]
    tr, va = holdout_split(recs, 0.25)
    assert len(va) == 10 and class_counts(va, 2) == [5, 5] and not set(tr) & set(va)


def test_datamodule_file_names_and_validation(tmp_path):
    dm = DFERDataModule(dataset="mafw", annotation_dir=str(tmp_path), fold=3)
    files = dm.annotation_files()
    assert files["train"].name == "MAFW_set_3_train.txt" and files["test"].name == "MAFW_set_3_test.txt"
    assert dm.num_classes == 11 and dm.augment == "mafw"
    assert DFERDataModule(dataset="ferv39k").annotation_files()["test"].name == "FERV39K_test.txt"
    with pytest.raises(ValueError, match="folds 1..1"):
        DFERDataModule(dataset="ferv39k", fold=2)
    with pytest.raises(ValueError, match="val_split"):
        DFERDataModule(val_split="best")
