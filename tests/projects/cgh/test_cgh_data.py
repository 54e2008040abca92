"""CGH data readers on small files written in the real formats, and their errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from projects.cgh.data import CGHDataModule, build_dataset, load_cifar_batch, missing_files


def _write_cifar(root, name="cifar10", n=4):
    rng = np.random.default_rng(0)
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        files, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], "labels"
    else:
        d = root / "cifar-100-python"
        files, key = ["train", "test"], "fine_labels"
    d.mkdir(parents=True)
    for f in files:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": data, key.encode(): list(range(n))}, fh, protocol=2)
    return d


def test_cifar_pickles_read_as_hwc(tmp_path):
    d = _write_cifar(tmp_path)
    ds = build_dataset("cifar10", tmp_path, "train")
    assert len(ds) == 20
    img, label, index = ds[5]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and (label, index) == (1, 5)
    raw = pickle.load(open(d / "data_batch_2", "rb"))[b"data"][1]
    np.testing.assert_array_equal(np.asarray(img)[:, :, 0].ravel(), raw[:1024])  # red plane first
    assert len(build_dataset("cifar10", d, "test")) == 4  # the batches folder itself is accepted too


def test_cifar100_fine_labels(tmp_path):
    _write_cifar(tmp_path, "cifar100", n=3)
    ds = build_dataset("cifar100", tmp_path, "test")
    assert [ds[i][1] for i in range(3)] == [0, 1, 2]


def test_cifar_loader_refuses_foreign_pickles(tmp_path):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as fh:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": pickle.Unpickler}, fh)
    with pytest.raises(ValueError, match="data_batch_1.*not a readable CIFAR"):
        load_cifar_batch(path, "labels")


def test_stl10_binaries_train_plus_unlabeled(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    rng = np.random.default_rng(0)
    imgs = {
        s: rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        for s, n in (("train", 3), ("test", 2), ("unlabeled", 4))
    }
    for s, x in imgs.items():
        x.tofile(d / f"{s}_X.bin")
    np.array([1, 5, 10], np.uint8).tofile(d / "train_y.bin")
    np.array([2, 3], np.uint8).tofile(d / "test_y.bin")
    ds = build_dataset("stl10", tmp_path, "train+unlabeled")
    assert len(ds) == 7
    img, label, _ = ds[1]
    assert label == 4 and img.size == (96, 96)
    # the binary stores each channel column-major: pixel (row r, col c) is at [c, r]
    np.testing.assert_array_equal(np.asarray(img)[7, 3], imgs["train"][1][:, 3, 7])
    assert ds[5][1] == -1
    (d / "train_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(ValueError, match="3 images but train_y.bin 2 labels"):
        build_dataset("stl10", tmp_path, "train")


def test_tinyimagenet_and_imagenet_folders(tmp_path):
    t = tmp_path / "tiny-imagenet-200"
    for w in ("n02", "n01"):
        (t / "train" / w / "images").mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(t / "train" / w / "images" / f"{w}_0.JPEG")
    (t / "wnids.txt").write_text("n02\nn01\n")
    (t / "val" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(t / "val" / "images" / "val_0.JPEG")
    (t / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t63\t63\n")
    train = build_dataset("tinyimagenet", tmp_path, "train")
    assert [train[i][1] for i in range(2)] == [0, 1]  # sorted wnids: n01 -> 0
    assert build_dataset("tinyimagenet", tmp_path, "test")[0][1] == 1
    (t / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\n")
    with pytest.raises(ValueError, match="val_annotations.txt:1"):
        build_dataset("tinyimagenet", tmp_path, "test")

    inet = tmp_path / "imagenet"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (inet / split / c).mkdir(parents=True)
            Image.new("RGB", (40, 30)).save(inet / split / c / "x.JPEG")
    ds = build_dataset("imagenet", inet, "test")
    assert len(ds) == 2 and ds[1][1] == 1
    (inet / "val" / "b" / "x.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="x.JPEG: unreadable image"):
        ds[1]


def test_missing_data_is_named(tmp_path):
    miss = missing_files("cifar10", tmp_path)
    assert len(miss) == 6 and miss[0].endswith("cifar-10-batches-py/data_batch_1")
    with pytest.raises(FileNotFoundError, match="stl10: missing under .*unlabeled_X.bin"):
        build_dataset("stl10", tmp_path, "train")
    assert missing_files("digits", tmp_path) == []


def test_pretrain_views_and_eval_items(tmp_path):
    _write_cifar(tmp_path)
    dm = CGHDataModule(
        "cifar10", str(tmp_path), batch_size=4, eval_batch_size=8, num_workers=0, local_crops=[[16, 0.1, 0.5]]
    )
    views, y, idx = next(iter(dm.train_dataloader()))
    assert [v.shape for v in views] == [(4, 3, 32, 32), (4, 3, 32, 32), (4, 3, 16, 16)]
    memory, query = dm.test_dataloader()
    x, y, idx = next(iter(query))
    assert x.shape == (4, 3, 32, 32) and idx.tolist() == [0, 1, 2, 3]
    assert len(memory.dataset) == 20
    dm = CGHDataModule("digits", "", task="linear", batch_size=8, num_workers=0)
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 12, 12) and torch.is_floating_point(x)


def test_reproduce_stops_at_once_naming_missing_files(tmp_path, capsys):
    from projects.cgh.reproduce import main as reproduce

    assert reproduce(["--dataset", "stl10", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "stl10_binary/unlabeled_X.bin" in err and "stl10_binary/train_X.bin" in err
    assert reproduce(["--dataset", "cifartoy"]) == 2
    assert "unknown dataset 'cifartoy'" in capsys.readouterr().err
