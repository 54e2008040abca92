"""MaskCon data: readers on the real official label files, synthetic CIFAR/ImageNet32 pickles, CSV, digits,
missing-data messages, reproducible views, the resumable sampler, and every config parsing."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.cli import cli_main
from common.data.resumable import ResumableSampler
from common.errors import AnnotationError
from projects.maskcon import data as D
from projects.maskcon.module import MaskConModule

CONFIGS = sorted(Path("projects/maskcon/configs").glob("*.yaml"))
OFFICIAL = "MrChenFeng_MaskCon_CVPR2023/coarse_labels"


# ----------------------------------------------------------------------------------------- real files
@pytest.mark.parametrize(
    "split,train,n_img,n_fine",
    [(1, True, 25368, 2517), (1, False, 25278, 2518), (2, True, 14980, 1498), (2, False, 2996, 1498)],
)
def test_sop_split_files(shared_data, split, train, n_img, n_fine):
    paths, coarse, fine = D.read_sop_split(shared_data / OFFICIAL, split, train)
    assert len(paths) == n_img and len(set(fine)) == n_fine
    assert sorted(set(coarse)) == list(range(12))
    assert paths[0].startswith("bicycle_final/")
    # a product (fine label) never spans two coarse classes
    pairs = set(zip(fine, coarse))
    assert len(pairs) == n_fine
    if split == 2:
        # split 2: the same 1,498 products in train and test, 10 / 2 images each
        assert np.bincount(fine).tolist() == [10 if train else 2] * n_fine


def test_sop_split1_products_disjoint(shared_data):
    tr, _, _ = D.read_sop_split(shared_data / OFFICIAL, 1, True)
    te, _, _ = D.read_sop_split(shared_data / OFFICIAL, 1, False)
    product = lambda p: p.rsplit("_", 1)[0]  # noqa: E731  "<class>_final/<product id>_<n>.JPG"
    assert not {product(p) for p in tr} & {product(p) for p in te}


def test_imagenet32_maps(shared_data):
    to_fine, to_coarse = D.imagenet32_label_maps(shared_data / OFFICIAL / "imagenet32")
    assert sorted(to_fine.tolist()) == list(range(1000))
    sizes = np.bincount(to_coarse).tolist()
    assert sizes == [61, 123, 59, 95, 60, 130, 70, 53, 105, 71, 93, 80]
    assert to_coarse[151:269].tolist() == [1] * 118  # the dog classes are one coarse class


def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_imagenet32_reader_with_real_maps(shared_data, tmp_path):
    folder = tmp_path / "imagenet32"
    folder.mkdir()
    for name in D.IMAGENET32_MAPS:
        (folder / name).write_text((shared_data / OFFICIAL / "imagenet32" / name).read_text())
    rng = np.random.default_rng(0)
    labels = [1, 1000, 500]
    for i in range(1, 11):
        _write_pickle(folder / f"train_data_batch_{i}", {"data": rng.integers(0, 255, (3, 3072)), "labels": labels})
    _write_pickle(folder / "val_data", {"data": rng.integers(0, 255, (3, 3072)), "labels": labels})
    to_fine, to_coarse = D.imagenet32_label_maps(folder)
    ds = D.imagenet32(tmp_path, train=False)
    img, c, f = ds[1]
    assert img.size == (32, 32) and f == to_fine[999] and c == to_coarse[to_fine[999]]
    assert len(D.imagenet32(tmp_path, train=True)) == 30


# ----------------------------------------------------------------------------------------- synthetic
def _fake_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    labels = list(range(10)) * 2
    for name in [*D._CIFAR10_TRAIN, "test_batch"]:
        _write_pickle(folder / name, {"data": np.zeros((20, 3072), np.uint8), "labels": labels})


@pytest.mark.parametrize("grouping", ["good", "bad"])
def test_cifartoy_groupings(tmp_path, grouping):
    _fake_cifar10(tmp_path)
    ds = D.cifartoy(tmp_path, grouping, train=False)
    assert len(ds) == 16 and 4 not in ds.fine and 6 not in ds.fine  # deer and frog dropped
    coarse_of = {int(f): int(c) for f, c in zip(ds.fine, ds.coarse)}
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    group1 = sorted(names[f] for f, c in coarse_of.items() if c == 1)
    want = ["bird", "cat", "dog", "horse"] if grouping == "good" else ["bird", "horse", "ship", "truck"]
    assert group1 == want
    assert len(D.cifartoy(tmp_path, grouping, train=True)) == 80


def test_cifar100_superclasses(tmp_path):
    fine = np.arange(100)
    coarse = fine % 20
    _write_pickle(
        tmp_path / "cifar-100-python" / "test",
        {"data": np.zeros((100, 3072), np.uint8), "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()},
    )
    ds = D.cifar100(tmp_path, train=False)
    assert ds[37][1:] == (17, 37)


def test_cars196_body_types():
    m = D.cars196_coarse_map()
    assert (m >= 0).all() and np.bincount(m).tolist() == [18, 50, 36, 30, 29, 14, 6, 13]


def test_csv_reader(tmp_path):
    img = tmp_path / "imgs" / "a.png"
    img.parent.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(img)
    (tmp_path / "train.csv").write_text("path,coarse,fine\nimgs/a.png,1\nimgs/a.png,0,3\n")
    paths, coarse, fine = D.read_label_csv(tmp_path / "train.csv", need_fine=False)
    assert coarse == [1, 0] and fine == [-1, 3] and Path(paths[0]) == img
    with pytest.raises(ValueError, match=r"train.csv:2: evaluation needs a fine label"):
        D.read_label_csv(tmp_path / "train.csv", need_fine=True)
    (tmp_path / "bad.csv").write_text("imgs/a.png,x,1\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: labels must be integers"):
        D.read_label_csv(tmp_path / "bad.csv", need_fine=False)
    # every bad line in one error, each with its number
    (tmp_path / "bad.csv").write_text("path,coarse\nimgs/a.png,x\nimgs/a.png,1\nimgs/a.png\nimgs/a.png,-2,1\n")
    with pytest.raises(AnnotationError) as err:
        D.read_label_csv(tmp_path / "bad.csv", need_fine=False)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'bad.csv'}: 3 bad lines (of 5)")
    assert (
        "bad.csv:2: labels must be integers" in msg and "bad.csv:4: expected 'path,coarse[,fine]', got 1 fields" in msg
    )
    assert "bad.csv:5: coarse label -2 is negative: 'imgs/a.png,-2,1'" in msg and "bad.csv:3" not in msg
    dm = D.MaskConDataModule("csv", train_csv=str(tmp_path / "train.csv"), test_csv=str(tmp_path / "train.csv"))
    with pytest.raises(ValueError, match="fine label"):
        dm.setup("fit")
    ds = D.FileListDataset("/", [str(tmp_path / "nope.png")], [0], [0])
    with pytest.raises(ValueError, match="nope.png: cannot read the image"):
        ds[0]


@pytest.mark.parametrize("dataset", ["cifartoy_good", "cifar100", "imagenet32", "sop_split2", "cars196", "csv"])
def test_missing_dataset_one_message(tmp_path, dataset):
    dm = D.MaskConDataModule(dataset, data_root=str(tmp_path))
    with pytest.raises(D.MissingDatasetError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert msg.count("is missing") == 1 or dataset == "csv"
    if dataset != "csv":
        assert str(tmp_path) in msg and "source:" in msg
    assert D.dataset_status(dataset, str(tmp_path)) == msg


# ----------------------------------------------------------------------------------------- digits, views
def test_digits_views_reproducible_and_epoch_dependent():
    dm = D.MaskConDataModule("digits", batch_size=8, num_workers=0, limit_train=16, limit_test=8)
    dm.setup("fit")
    ds = dm.train_set
    (k1, q1), c, f, i = ds[3]
    assert k1.shape == (1, 12, 12) and c == D.DIGIT_GROUPINGS["shape3"][f] and i == 3
    torch.manual_seed(123)  # the global RNG does not matter
    (k2, q2), *_ = ds[3]
    assert torch.equal(k1, k2) and torch.equal(q1, q2)
    ds.set_epoch(1)
    (k3, q3), *_ = ds[3]
    assert not torch.equal(q1, q3)
    x, c, f, i = dm.test_set[2]
    assert x.shape == (1, 12, 12) and i == 2
    # every view is standardised per image (no background/contrast shortcut for instance discrimination)
    for v in (k1, q1, x):
        assert abs(float(v.mean())) < 1e-5 and float(v.std()) == pytest.approx(1.0, abs=1e-4)


def test_sampler_shards_and_resumes():
    ds = list(range(10))
    full = list(ResumableSampler(ds, seed=3))
    assert sorted(full) == ds
    r0 = list(ResumableSampler(ds, seed=3, num_replicas=2, rank=0))
    r1 = list(ResumableSampler(ds, seed=3, num_replicas=2, rank=1))
    assert r0 == full[0::2] and r1 == full[1::2]
    s = ResumableSampler(ds, seed=3)
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != full and sorted(e1) == ds
    s.start = 4
    assert list(s) == e1[4:] and list(s) == e1  # the offset applies once


def test_image_transforms_shapes():
    img = Image.new("RGB", (40, 30), (10, 200, 30))
    for ds, size in (("cifar100", 32), ("cars196", 224), ("sop_split1", 224)):
        for kind in ("strong", "weak", "test"):
            assert D.image_transform(ds, kind)(img).shape == (3, size, size)


# ----------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses(config):
    cli = cli_main(MaskConModule, D.MaskConDataModule, project="maskcon", args=["--config", str(config)], run=False)
    assert isinstance(cli.model, MaskConModule)
    h, d = cli.model.hparams, cli.datamodule.hparams
    if d.dataset != "digits":
        assert h.arch == "resnet18" and h.lr == 0.02 and h.momentum == 0.99 and h.weight_decay == 5e-4
        assert h.dim == 256 and h.t1 == 0.1 and h.cifar_stem == (d.dataset in ("cifartoy_good", "cifartoy_bad",
                                                                               "cifar100", "imagenet32"))  # fmt: skip
        assert config.stem == f"{d.dataset}_{h.mode}" or (h.mode == "supcon" and config.stem.endswith("_supcon"))


def test_paper_configs_cover_every_dataset_and_method():
    stems = {c.stem for c in CONFIGS}
    for ds in ("cifartoy_good", "cifartoy_bad", "cifar100", "imagenet32", "sop_split1", "sop_split2", "cars196"):
        for m in ("maskcon", "selfcon", "supcon", "grafit", "coins"):
            assert f"{ds}_{m}" in stems
    assert {"demo", "digits_full", "tiny", "csv_maskcon"} <= stems


def test_reproduce_without_data_stops_at_once(tmp_path, capsys):
    from projects.maskcon import reproduce

    with pytest.raises(SystemExit) as err:
        reproduce.main(["--dataset", "cifar100", "--data_root", str(tmp_path)])
    assert err.value.code == 2
    out = capsys.readouterr().err
    assert "cifar-100-python/train" in out and "cifar-100-python/test" in out and "resnet18-f37072fd.pth" in out
    json.dumps(out)  # plain text


@pytest.mark.slow
def test_reproduce_trains_and_tests_on_a_small_cifar100(tmp_path, capsys):
    from projects.maskcon import reproduce

    rng = np.random.default_rng(0)
    fine = np.arange(40) % 20
    for part in ("train", "test"):
        _write_pickle(
            tmp_path / "cifar-100-python" / part,
            {"data": rng.integers(0, 255, (40, 3072), dtype=np.uint8), "fine_labels": fine.tolist(),
             "coarse_labels": (fine % 4).tolist()},
        )  # fmt: skip
    res = reproduce.main(
        ["--dataset", "cifar100", "--data_root", str(tmp_path), "--model.backbone_weights=null",
         "--model.width=4", "--model.queue_size=16", "--data.batch_size=8", "--data.num_workers=0",
         "--trainer.max_epochs=1", "--trainer.accelerator=cpu", "--model.plot_embeddings=false"]
    )  # fmt: skip
    assert 0.0 <= res["test/recall@1"] <= res["test/recall@100"] == 1.0
    assert "recall@100" in capsys.readouterr().out
