"""StyleGAN2 data: image folders (resize, crop, errors naming the file), mirroring, the LMDB layout, face-world cache,
the resumable sampler."""

from __future__ import annotations

import builtins
import io

import pytest
import torch
from PIL import Image

from common.data.resumable import ResumableDataLoader, ResumableSampler
from projects.stylegan2.data import (
    ImageFolderDataset,
    LMDBDataset,
    Mirrored,
    MissingDatasetError,
    StyleGAN2DataModule,
    faceworld_cache_path,
    load_faceworld_cache,
)


def _png(path, w, h, colour=(255, 0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (w, h), colour)
    img.putpixel((0, 0), (0, 0, 255))
    img.save(path)


def test_folder_resizes_crops_and_scales(tmp_path):
    _png(tmp_path / "a" / "1.png", 16, 16)
    _png(tmp_path / "b.jpg", 32, 16, (0, 255, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path, 8)
    assert [p.name for p in ds.files] == ["1.png", "b.jpg"]
    x = ds[0]
    assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert x[0, 4, 4] == pytest.approx(1.0) and x[1, 4, 4] == pytest.approx(-1.0)  # red -> (1, -1, -1)
    y = ds[1]  # 32x16 -> 16x8 -> centre crop 8x8, green
    assert y.shape == (3, 8, 8) and y[1].mean() > 0.9


def test_folder_errors_name_the_path(tmp_path):
    with pytest.raises(MissingDatasetError, match="nope: no such folder"):
        ImageFolderDataset(tmp_path / "nope", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDatasetError, match="empty: no images"):
        ImageFolderDataset(tmp_path / "empty", 8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png: unreadable image"):
        ImageFolderDataset(tmp_path / "bad", 8)[0]


def test_mirror_appends_flips(tmp_path):
    _png(tmp_path / "1.png", 8, 8)
    base = ImageFolderDataset(tmp_path, 8)
    m = Mirrored(base)
    assert len(m) == 2
    assert torch.equal(m[1], base[0].flip(-1)) and not torch.equal(m[1], m[0])


def test_lmdb_missing_package_is_explained(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_lmdb(name, *a, **k):
        if name == "lmdb":
            raise ImportError("no lmdb")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_lmdb)
    with pytest.raises(ImportError, match="ffhq.lmdb.*needs the optional 'lmdb' package: pip install lmdb"):
        LMDBDataset(tmp_path / "ffhq.lmdb", 64)


def test_lmdb_layout_of_prepare_data(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(3):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(buf, format="jpeg", quality=100)
            txn.put(f"8-{str(i).zfill(5)}".encode(), buf.getvalue())
        txn.put(b"length", b"3")
    env.close()
    ds = LMDBDataset(tmp_path / "db", 8)
    assert len(ds) == 3 and ds[2].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="no images of resolution 16"):
        LMDBDataset(tmp_path / "db", 16)


def test_faceworld_cache_renders_once_and_rebuilds_stale(tmp_path, capsys):
    imgs = load_faceworld_cache(tmp_path, "val", 16, 6, seed=0)
    assert imgs.shape == (6, 3, 16, 16) and imgs.dtype == torch.uint8
    assert "rendering face world val 16px" in capsys.readouterr().out
    again = load_faceworld_cache(tmp_path, "val", 16, 6, seed=0)
    assert torch.equal(imgs, again) and "rendering" not in capsys.readouterr().out
    path = faceworld_cache_path(tmp_path, "val", 16, 6, 0)
    blob = torch.load(path, weights_only=True)
    assert blob["pose"].shape == (6, 3) and blob["identity_index"].min() >= 100_000  # validation identities
    blob["renderer"] = "old"
    torch.save(blob, path)
    assert torch.equal(load_faceworld_cache(tmp_path, "val", 16, 6, seed=0), imgs)
    assert "another renderer version" in capsys.readouterr().out


def test_datamodule_faceworld_batches_and_validation_set(tmp_path):
    dm = StyleGAN2DataModule("faceworld", size=16, batch_size=4, train_length=8, val_length=4, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32 and batch.abs().max() <= 1
    assert next(iter(dm.val_dataloader())).shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="needs data.root"):
        StyleGAN2DataModule("folder")
    with pytest.raises(ValueError, match="data.source must be one of"):
        StyleGAN2DataModule("ffhq")


def test_resumable_loader_restarts_at_the_next_batch():
    data = list(range(10))
    loader = ResumableDataLoader(data, batch_size=2, sampler=ResumableSampler(data, seed=3), drop_last=True)
    loader.progress = lambda: (0, 2)
    straight = [b.tolist() for b in loader]
    state = loader.state_dict()
    fresh = ResumableDataLoader(data, batch_size=2, sampler=ResumableSampler(data, seed=3), drop_last=True)
    fresh.load_state_dict(state)
    assert [b.tolist() for b in fresh] == straight[2:]
    assert [b.tolist() for b in fresh] == straight  # the skip applies to one pass only
    ranks = [list(ResumableSampler(data, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == data and not set(ranks[0]) & set(ranks[1])
