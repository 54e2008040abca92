import torch

from common.data.digits import NoisyDigits, raw_pixel_recall, split_indices
from common.data.transforms import TwoViews


def test_digits_fixed_split_and_determinism():
    a, b = NoisyDigits("train"), NoisyDigits("train")
    t = NoisyDigits("test")
    assert len(a) + len(t) == 1797
    assert set(split_indices(1797, "train")).isdisjoint(split_indices(1797, "test"))
    torch.testing.assert_close(a.images, b.images)
    img, label, idx = a[3]
    assert img.shape == (1, 12, 12) and 0 <= img.min() and img.max() <= 1 and idx == 3
    assert isinstance(label, int)


def test_digits_is_harder_than_plain_digits():
    hard = raw_pixel_recall(ks=(1,))[1]
    plain = raw_pixel_recall(ks=(1,), canvas=8, noise=0.0)[1]
    assert plain > 0.9 and 0.4 < hard < 0.8


def test_two_views():
    ds = NoisyDigits("test", transform=TwoViews(lambda x: x + 1, lambda x: x * 0))
    (v1, v2), _, _ = ds[0]
    torch.testing.assert_close(v1 - 1, ds.images[0])
    assert v2.abs().sum() == 0
