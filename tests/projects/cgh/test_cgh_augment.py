"""Batched views (projects/cgh/augment.py) against torchvision's per-image ops, and the datamodule wiring."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms.functional as TF

from projects.cgh.augment import (
    BatchViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    crop_resize,
    gaussian_blur,
    grayscale,
    random_resized_crop_boxes,
)
from projects.cgh.data import DATASETS, CGHDataModule


def _imgs(n=4, h=12, w=12):
    torch.manual_seed(0)
    return torch.rand(n, 3, h, w)


def test_crop_resize_identity_flip_and_torchvision():
    x = _imgs()
    full = torch.tensor([[0, 0, 12, 12]] * 4, dtype=torch.float32)
    assert torch.allclose(crop_resize(x, full, 12), x, atol=1e-6)
    flip = torch.tensor([True, False, True, False])
    out = crop_resize(x, full, 12, flip)
    assert torch.allclose(out[0], x[0].flip(-1), atol=1e-6) and torch.allclose(out[1], x[1], atol=1e-6)
    box = torch.tensor([[2, 3, 6, 8]] * 4, dtype=torch.float32)  # top, left, h, w -> upsampled to 12 x 12
    ref = TF.resized_crop(x, 2, 3, 6, 8, [12, 12], antialias=False)
    # identical away from the crop border (there grid_sample reads the neighbouring pixels outside the box)
    assert torch.allclose(crop_resize(x, box, 12)[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)


def test_random_resized_crop_boxes_follow_the_ranges():
    g = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(500, (0.2, 1.0), (3 / 4, 4 / 3), 32, 32, generator=g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    frac = h * w / 1024
    assert frac.min() >= 0.15 and frac.max() <= 1.0 and frac.std() > 0.1
    ratio = w / h
    assert ratio.min() > 0.6 and ratio.max() < 1.6


@pytest.mark.parametrize("factor", [0.6, 1.3])
def test_colour_ops_match_torchvision(factor):
    x = _imgs()
    f = torch.full((4,), factor)
    assert torch.allclose(adjust_brightness(x, f), TF.adjust_brightness(x, factor), atol=1e-6)
    assert torch.allclose(adjust_contrast(x, f), TF.adjust_contrast(x, factor), atol=1e-5)
    assert torch.allclose(adjust_saturation(x, f), TF.adjust_saturation(x, factor), atol=1e-5)
    assert torch.allclose(grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6)
    for shift in (-0.1, 0.07, 0.4):
        assert torch.allclose(adjust_hue(x, torch.full((4,), shift)), TF.adjust_hue(x, shift), atol=1e-5)


def test_per_image_factors_and_probability():
    x = _imgs()
    out = adjust_hue(x, torch.tensor([0.0, 0.1, 0.0, -0.2]))
    assert torch.allclose(out[0], x[0], atol=1e-5) and torch.allclose(out[1], TF.adjust_hue(x[1], 0.1), atol=1e-5)
    assert torch.equal(color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.0), x)
    assert not torch.allclose(color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=1.0), x)


def test_blur_matches_torchvision():
    x = _imgs(2)
    out = gaussian_blur(x, 3, torch.tensor([0.5, 1.7]))
    for i, s in enumerate((0.5, 1.7)):
        assert torch.allclose(out[i], TF.gaussian_blur(x[i], [3, 3], [s, s]), atol=1e-5)


def test_batch_views_shapes_and_normalisation():
    info = DATASETS["shapes"]
    bv = BatchViews(32, info.mean, info.std, local_crops=[(16, 0.1, 0.5)])
    imgs = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    views = bv(imgs, generator=torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32), (8, 3, 32, 32), (8, 3, 16, 16)]
    # a constant grey image stays constant under crops and flips: the weak view is just normalised
    grey = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    weak = bv(grey)[0]
    expected = (128 / 255 - torch.tensor(info.mean)) / torch.tensor(info.std)
    assert torch.allclose(weak, expected.view(1, 3, 1, 1).expand_as(weak), atol=1e-5)


def test_datamodule_batch_views_in_training_only():
    dm = CGHDataModule(dataset="shapes", root="", batch_size=8, num_workers=0, batch_views=True, limit_train=16)
    x, y, idx = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32)
    dm.trainer = SimpleNamespace(training=True)
    views, y2, _ = dm.on_after_batch_transfer((x, y, idx), 0)
    assert len(views) == 2 and views[0].dtype == torch.float32 and torch.equal(y2, y)
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer((x, y, idx), 0)[0] is x
    with pytest.raises(ValueError, match="RGB"):
        CGHDataModule(dataset="digits", root="", batch_views=True)


def test_batch_views_teacher_view_strong_is_a_second_strong_view():
    info = DATASETS["shapes"]
    imgs = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    x = imgs.float() / 255
    default = BatchViews(32, info.mean, info.std)
    strong = BatchViews(32, info.mean, info.std, teacher_view="strong")
    first_default = default(imgs, generator=torch.Generator().manual_seed(3))[0]
    first_strong = strong(imgs, generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(first_default, default.weak(x, torch.Generator().manual_seed(3)))
    torch.testing.assert_close(first_strong, default.strong(x, g=torch.Generator().manual_seed(3)))
    assert not torch.allclose(first_default, first_strong)
    with pytest.raises(ValueError, match="teacher_view"):
        BatchViews(32, info.mean, info.std, teacher_view="medium")
    with pytest.raises(ValueError, match="batch_views"):
        CGHDataModule(dataset="shapes", root="", teacher_view="strong")
    with pytest.raises(ValueError, match="teacher_view must be one of"):
        CGHDataModule(dataset="shapes", root="", batch_views=True, teacher_view="medium")
