"""Frame sampling exactly as the official loader (T = 16 segments)."""

import numpy as np
import pytest

from projects.dferclip.data import sample_indices

T = 16


@pytest.mark.parametrize(
    "n, expected",
    [
        (8, [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7]),  # short clip: padded with the last frame
        (16, list(range(16))),
        (17, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]),  # int(17/32 + 17/16 * i)
        (40, [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]),  # int(1.25 + 2.5 * i)
    ],
)
def test_test_mode_indices(n, expected):
    assert sample_indices(n, T, train=False) == expected


def test_train_mode_short_and_exact_clips():
    rng = np.random.default_rng(0)
    assert sample_indices(8, T, train=True, rng=rng) == [0, 1, 2, 3, 4, 5, 6, 7] + [7] * 8
    # N = 16 and N = 17: one frame per segment of length 1, frame 16 of a 17-frame clip is never used
    for _ in range(5):
        assert sample_indices(16, T, train=True, rng=rng) == list(range(16))
        assert sample_indices(17, T, train=True, rng=rng) == list(range(16))


def test_train_mode_random_frame_per_segment():
    # N = 40: segments of floor(40/16) = 2 frames; frames 32..39 are never used
    draws = np.array([sample_indices(40, T, train=True, rng=np.random.default_rng(s)) for s in range(200)])
    seg_start = 2 * np.arange(T)
    assert ((draws == seg_start) | (draws == seg_start + 1)).all()
    assert (draws == seg_start).any(axis=0).all() and (draws == seg_start + 1).any(axis=0).all()
    assert draws.max() <= 31
    # the same generator state gives the same offsets: 2 i + U{0, 1}
    offs = np.random.default_rng(7).integers(0, 2, size=T)
    assert sample_indices(40, T, train=True, rng=np.random.default_rng(7)) == (seg_start + offs).tolist()


def test_rejects_empty_clip():
    with pytest.raises(ValueError, match="at least one frame"):
        sample_indices(0, T, train=False)
