"""Procedural shapes: determinism, balance, disjoint splits, the items the CGH pipeline reads, and the styles
(``shapes``: the original set, unchanged; ``shapes_hard``: small objects anywhere, colours from the SSL jitter;
``shapes_many``: several objects of the class scattered over a randomly shifted grid)."""

from __future__ import annotations

import numpy as np
import pytest

from projects.cgh.shapes import CLASSES, NUM_CLASSES, STYLES, ProceduralShapes, ShapeStyle, render_shapes


def test_deterministic_balanced_and_uint8():
    a, ya = render_shapes(60, 16, seed=3)
    b, yb = render_shapes.__wrapped__(60, 16, seed=3)  # bypass the cache: a fresh render gives the same bytes
    assert a.dtype == np.uint8 and a.shape == (60, 16, 16, 3)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert np.bincount(ya, minlength=NUM_CLASSES).tolist() == [6] * NUM_CLASSES
    assert not a.flags.writeable  # cached arrays are shared: read-only
    c, _ = render_shapes(60, 16, seed=4)
    assert not np.array_equal(a, c)


def test_object_is_visible_against_the_background():
    x, y = render_shapes(50, 32, seed=0)
    x = x.astype(np.float32)
    # the centre region of the object differs from the border background by a clear margin in every image
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1).mean(1)  # [N, 3]
    spread = np.abs(x - border[:, None, None]).max(axis=(1, 2, 3))
    assert (spread > 60).all()
    assert len(CLASSES) == NUM_CLASSES == 10


def test_dataset_items_and_splits():
    tr = ProceduralShapes("train", size=16, n=30)
    te = ProceduralShapes("test", size=16, n=30)
    img, label, idx = tr[7]
    assert img.size == (16, 16) and 0 <= label < NUM_CLASSES and idx == 7
    assert not np.array_equal(tr.images, te.images)
    with pytest.raises(ValueError, match="split"):
        ProceduralShapes("val")


def _object_mask(x: np.ndarray, thresh: float = 25.0) -> np.ndarray:
    """Pixels that differ from the image's median border colour (the background of a one-colour style)."""
    x = x.astype(np.float32)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    return np.abs(x - np.median(border, axis=1)[:, None, None]).max(-1) > thresh


def test_original_style_is_unchanged():
    # per-image pixel sums and labels of the original set as drawn before styles existed (a tolerance of a few
    # grey levels in total per image allows last-bit differences of the float maths between CPUs)
    x, y = render_shapes(20, 16, seed=3)
    sums = [111539, 52267, 117752, 99036, 121879, 63481, 114573, 46078, 36465, 109299]
    sums += [115729, 119076, 77870, 80749, 78987, 76492, 21278, 47958, 37166, 60960]
    assert y.tolist() == [8, 2, 6, 9, 7, 1, 3, 2, 5, 4, 5, 6, 1, 0, 3, 0, 4, 9, 7, 8]
    assert np.abs(x.reshape(20, -1).astype(np.int64).sum(1) - np.array(sums)).max() <= 8
    assert np.array_equal(render_shapes(20, 16, seed=3, style=ShapeStyle())[0], x)


def test_hard_style_small_visible_objects_inside_the_frame():
    x, y = render_shapes(50, 32, seed=0, style="shapes_hard")
    b, yb = render_shapes.__wrapped__(50, 32, seed=0, style="shapes_hard")
    assert x.shape == (50, 32, 32, 3) and x.dtype == np.uint8
    assert np.array_equal(x, b) and np.array_equal(y, yb)
    assert np.bincount(y, minlength=NUM_CLASSES).tolist() == [5] * NUM_CLASSES
    area = _object_mask(x).mean((1, 2))
    orig, _ = render_shapes(50, 32, seed=0)
    assert area.max() < 0.3 and area.mean() < 0.5 * _object_mask(orig, 40).mean()  # smaller objects
    assert (area > 0.02).all()  # every object visible against its one-colour background
    mask = _object_mask(x)
    touches = mask[:, 0].any(1) | mask[:, -1].any(1) | mask[:, :, 0].any(1) | mask[:, :, -1].any(1)
    assert touches.sum() <= 1  # the whole outline stays inside the frame (antialiasing may graze a border)


def test_hard_style_colours_vary_like_the_jitter():
    x, _ = render_shapes(200, 32, seed=0, style="shapes_hard")
    plain, _ = render_shapes(
        200, 32, seed=0, style=ShapeStyle(**{**STYLES["shapes_hard"].__dict__, "jitter": 0.0, "grey_p": 0.0})
    )
    grey = (x.max(-1) - x.min(-1)).max((1, 2)) <= 2
    assert 0.1 < grey.mean() < 0.3  # grey-scale with probability 0.2
    # without the jitter every background has one of two colours (light or dark band, one hue); with it they spread
    bg_plain = plain[:, 0, 0].astype(np.float32)
    hue_plain = np.argmax(bg_plain, 1)
    assert len(set(hue_plain.tolist())) == 1
    assert np.std(x[:, 0, 0].astype(np.float32), axis=0).mean() > np.std(bg_plain, axis=0).mean()


def test_style_options_are_validated():
    with pytest.raises(ValueError, match="unknown style"):
        render_shapes(10, 16, style="shapes_easy")
    with pytest.raises(TypeError, match="ShapeStyle"):
        render_shapes(10, 16, style=3)
    with pytest.raises(ValueError, match="scale"):
        ShapeStyle(scale=(0.6, 0.3))
    with pytest.raises(ValueError, match="scale"):
        ShapeStyle(scale=(0.05, 0.3))
    with pytest.raises(ValueError, match="colours"):
        ShapeStyle(colours="rainbow")
    with pytest.raises(ValueError, match="grey_p"):
        ShapeStyle(grey_p=1.5)
    with pytest.raises(ValueError, match="noise"):
        ShapeStyle(noise=-0.1)
    with pytest.raises(ValueError, match="shift"):
        ShapeStyle(shift=1.5)
    with pytest.raises(ValueError, match="outline"):
        ShapeStyle(outline=-0.1)


def test_geometry_options():
    base = ShapeStyle(colours="jitter", jitter=0.0, grey_p=0.0, gradient=False, polarity=False, inside=True)
    yy, xx = np.mgrid[0:32, 0:32]

    def centroids(style):
        m = _object_mask(render_shapes(40, 32, seed=2, style=style)[0])
        a = m.sum((1, 2))
        return (m * xx).sum((1, 2)) / a, (m * yy).sum((1, 2)) / a, a

    cx, cy, area = centroids(base)
    cx0, cy0, _ = centroids(ShapeStyle(**{**base.__dict__, "shift": 0.0}))
    assert np.abs(cx - 15.5).mean() > 3 * np.abs(cx0 - 15.5).mean()  # shift 0: every outline centred
    assert np.abs(cx0 - 15.5).max() < 6 and np.abs(cy0 - 15.5).max() < 6  # centroid of a crescent is off-centre
    _, _, thin = centroids(ShapeStyle(**{**base.__dict__, "outline": 0.1}))
    labels = render_shapes(40, 32, seed=2, style=base)[1]
    solid = np.isin(labels, [CLASSES.index("circle"), CLASSES.index("square")])
    assert (thin[solid] < 0.8 * area[solid]).all()  # a stroke leaves the inside of a disk or square empty
    mirrored = render_shapes(40, 32, seed=2, style=ShapeStyle(**{**base.__dict__, "mirror": True}))[0]
    plain = render_shapes(40, 32, seed=2, style=base)[0]
    same = [np.array_equal(a, b) for a, b in zip(mirrored, plain, strict=True)]
    assert 0.2 < 1 - np.mean(same) <= 0.8  # about half the outlines mirrored (symmetric ones look the same)


@pytest.mark.parametrize("name", ["shapes_hard", "shapes_many"])
def test_styled_datasets_through_the_cgh_data_module(name):
    from projects.cgh.data import DATASETS, build_dataset, missing_files

    assert missing_files(name, "") == []
    ds = ProceduralShapes("test", size=32, n=40, style=name)
    img, label, idx = ds[3]
    assert img.size == (32, 32) and 0 <= label < NUM_CLASSES and idx == 3
    assert DATASETS[name].num_classes == NUM_CLASSES
    # the registered normalisation is that of the train split (5,000 images, world seed 0)
    x = render_shapes(5000, 32, seed=0, style=name)[0].astype(np.float64) / 255
    assert np.allclose(x.mean((0, 1, 2)), DATASETS[name].mean, atol=2e-4)
    assert np.allclose(x.std((0, 1, 2)), DATASETS[name].std, atol=2e-4)
    with pytest.raises(ValueError, match="split"):
        build_dataset(name, "", "unlabeled")


def test_grid_styles_scatter_objects_of_one_class():
    base = ShapeStyle(colours="jitter", jitter=0.0, grey_p=0.0, gradient=False, polarity=False, mirror=True)
    many = ShapeStyle(**{**base.__dict__, "grid": 2, "scale": (0.5, 0.9), "keep": 0.6})
    x, y = render_shapes(60, 32, seed=5, style=many)
    b, yb = render_shapes.__wrapped__(60, 32, seed=5, style=many)
    assert np.array_equal(x, b) and np.array_equal(y, yb)
    assert np.bincount(y, minlength=NUM_CLASSES).tolist() == [6] * NUM_CLASSES
    m = _object_mask(x)
    assert (m.mean((1, 2)) > 0.02).all()  # never an empty image

    # several separate objects: count the connected blobs of the object mask (4-neighbourhood flood fill)
    def blobs(mask: np.ndarray) -> int:
        seen, count = np.zeros_like(mask), 0
        for i, j in zip(*np.nonzero(mask), strict=True):
            if seen[i, j]:
                continue
            count, stack = count + 1, [(i, j)]
            seen[i, j] = True
            while stack:
                a, c = stack.pop()
                for da, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    p, q = a + da, c + dc
                    if 0 <= p < 32 and 0 <= q < 32 and mask[p, q] and not seen[p, q]:
                        seen[p, q] = True
                        stack.append((p, q))
        return count

    counts = np.array([blobs(mi) for mi in m])
    assert counts.max() >= 4 and counts.min() >= 1 and len(set(counts.tolist())) >= 3  # the count varies
    touches = m[:, 0].any(1) | m[:, -1].any(1) | m[:, :, 0].any(1) | m[:, :, -1].any(1)
    assert touches.mean() > 0.5  # the random phase lets the border cut objects
    # even when almost every cell is dropped, one cell inside the frame keeps an object
    sparse = ShapeStyle(**{**many.__dict__, "keep": 0.01})
    ms = _object_mask(render_shapes(60, 32, seed=5, style=sparse)[0])
    assert (ms.mean((1, 2)) > 0.01).all() and np.array([blobs(mi) for mi in ms]).max() <= 2


def test_grid_options_are_validated():
    with pytest.raises(ValueError, match="grid"):
        ShapeStyle(grid=5)
    with pytest.raises(ValueError, match="keep"):
        ShapeStyle(keep=0.0)
