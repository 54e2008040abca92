"""The region split of the face-world benchmark's pixel error, against hand computations."""

import math

import pytest
import torch

from benchmarks.faceworld_regions import changed_mask, psnr_from_sums, region_sums, summarize


def test_changed_mask_uses_the_largest_channel_difference():
    source = torch.zeros(1, 3, 1, 3)
    truth = source.clone()
    truth[0, 2, 0, 0] = 0.05  # one channel over the threshold
    truth[0, :, 0, 1] = 0.02  # every channel under it
    assert changed_mask(source, truth, 0.03).tolist() == [[[True, False, False]]]
    with pytest.raises(ValueError, match="changed_mask"):
        changed_mask(source, truth[:, :, :, :2])


def test_region_sums_and_psnr_by_hand():
    truth = torch.zeros(1, 3, 1, 2)
    out = truth.clone()
    out[0, :, 0, 0] = 0.3  # squared error 0.09 at the changed pixel
    out[0, 0, 0, 1] = 0.3  # 0.09 / 3 = 0.03 at the unchanged one
    mask = torch.tensor([[[True, False]]])
    s = region_sums(out, truth, mask)
    assert s["se_changed"] == pytest.approx(0.09) and s["se_unchanged"] == pytest.approx(0.03)
    assert (s["n_changed"], s["n_unchanged"]) == (1.0, 1.0)
    r = summarize(s)
    assert r["psnr_changed"] == pytest.approx(10 * math.log10(4 / 0.09))
    assert r["psnr_unchanged"] == pytest.approx(10 * math.log10(4 / 0.03))
    assert r["psnr_all"] == pytest.approx(10 * math.log10(4 / 0.06))
    assert r["changed_fraction"] == 0.5 and r["error_share_changed"] == pytest.approx(0.75)


def test_psnr_edge_cases():
    assert psnr_from_sums(0.0, 4.0) == math.inf
    assert math.isnan(psnr_from_sums(1.0, 0.0))
    # copying the source: exact outside the changed region
    s = summarize({"se_changed": 0.5, "se_unchanged": 0.0, "n_changed": 2.0, "n_unchanged": 6.0})
    assert s["psnr_unchanged"] == math.inf and s["error_share_changed"] == 1.0
