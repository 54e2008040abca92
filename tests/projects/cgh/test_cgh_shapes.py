"""Procedural shapes: determinism, balance, disjoint splits, and the items the CGH pipeline reads."""

from __future__ import annotations

import numpy as np
import pytest

from projects.cgh.shapes import CLASSES, NUM_CLASSES, ProceduralShapes, render_shapes


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
