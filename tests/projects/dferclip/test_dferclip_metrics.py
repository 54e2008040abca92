"""UAR / WAR on hand-built confusions, fold averaging, the confusion image."""

import math

import pytest
import torch

from common.callbacks.confusion import plot_confusion
from common.metrics.classification import UARWAR, fold_average, uar_war


def _preds_targets(cm):
    preds, targets = [], []
    for t, row in enumerate(cm):
        for p, n in enumerate(row):
            preds += [p] * n
            targets += [t] * n
    return torch.tensor(preds), torch.tensor(targets)


def test_uar_war_hand_built():
    cm = [[3, 1, 0], [0, 2, 2], [1, 0, 1]]
    # recalls 3/4, 2/4, 1/2 -> UAR 0.58333; WAR 6/10
    res = uar_war(torch.tensor(cm))
    assert res["uar"].item() == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert res["war"].item() == pytest.approx(0.6)
    metric = UARWAR(3)
    p, t = _preds_targets(cm)
    metric.update(p[:5], t[:5])  # accumulates over updates
    metric.update(p[5:], t[5:])
    assert torch.equal(metric.confusion(), torch.tensor(cm))
    out = metric.compute()
    assert out["uar"].item() == pytest.approx(0.583333, abs=1e-5)
    assert out["war"].item() == pytest.approx(0.6)


def test_uar_skips_classes_absent_from_targets():
    cm = torch.tensor([[2, 0, 0], [1, 1, 0], [0, 0, 0]])  # class 2 never occurs
    res = uar_war(cm)
    assert res["uar"].item() == pytest.approx((1.0 + 0.5) / 2)
    assert res["war"].item() == pytest.approx(3 / 4)
    assert int(res["num_present"]) == 2


def test_uar_differs_from_war_on_imbalance():
    cm = torch.tensor([[90, 0], [10, 0]])  # always predicts class 0
    res = uar_war(cm)
    assert res["war"].item() == pytest.approx(0.9) and res["uar"].item() == pytest.approx(0.5)


def test_fold_average():
    folds = [{"uar": 0.5, "war": 0.6}, {"uar": 0.7, "war": 0.8}, {"uar": 0.6, "war": 0.7, "extra": 1.0}]
    avg = fold_average(folds)
    assert avg["uar"] == pytest.approx(0.6) and avg["war"] == pytest.approx(0.7)
    assert avg["uar_std"] == pytest.approx(math.sqrt(((0.1) ** 2 + 0 + (0.1) ** 2) / 3))
    assert "extra" not in avg and avg["num_folds"] == 3
    with pytest.raises(ValueError):
        fold_average([])


def test_plot_confusion_writes_png(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion(torch.tensor([[3, 1], [0, 2]]), path, ["a", "b"], title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(torch.zeros(2, 2), path, ["a"])
