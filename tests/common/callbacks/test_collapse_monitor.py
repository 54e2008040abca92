"""CollapseMonitor on constructed collapsed and spread representations; schedule, mode handling, queues."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import TensorDataset

from common.callbacks.collapse_monitor import CollapseMonitor


class _Indexed(TensorDataset):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, y, i


class _Module(LightningModule):
    """'spread': random projection of the images; 'collapsed': one vector for every image; 'line': rank 1."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(16, 32)
        self.point = torch.nn.Parameter(torch.randn(32))
        self.modes: list[bool] = []

    def collapse_embeddings(self, x):
        self.modes.append(self.training)
        return {
            "spread": self.proj(x),
            "collapsed": self.point.expand(x.shape[0], -1),
            "line": x[:, :1] * self.point,
        }

    def collapse_queues(self):
        return {"queue": torch.randn(64, 8)}


def _trainer(epoch=0, max_epochs=10):
    torch.manual_seed(0)
    x, y = torch.randn(300, 16), torch.randint(0, 3, (300,))
    dm = SimpleNamespace(knn_datasets=lambda: (_Indexed(x, y), _Indexed(x[:5], y[:5])))
    return SimpleNamespace(datamodule=dm, current_epoch=epoch, max_epochs=max_epochs, sanity_checking=False)


def test_collapsed_and_spread_representations():
    torch.manual_seed(0)
    module = _Module().train()
    cb = CollapseMonitor(max_samples=200, batch_size=64)
    stats = cb.evaluate(_trainer(), module)
    assert stats["collapse/collapsed/erank"] == 1.0
    assert stats["collapse/collapsed/mean_cos"] == pytest.approx(1.0, abs=1e-5)
    assert stats["collapse/collapsed/std"] < 1e-3
    assert stats["collapse/line/erank"] == pytest.approx(1.0, abs=1e-3)
    assert stats["collapse/spread/erank"] > 12 and stats["collapse/spread/std"] > 0.5  # 16 input dims
    assert abs(stats["collapse/spread/mean_cos"]) < 0.2
    assert stats["collapse/queue/erank"] > 6  # 64 random 8-d rows
    assert module.training and set(module.modes) == {False}  # embedded in eval mode, mode restored


def test_subset_schedule_and_errors():
    cb = CollapseMonitor(every_n_epochs=3, max_samples=50)
    trainer = _trainer(max_epochs=8)
    sub = cb._subset(trainer.datamodule.knn_datasets()[0])
    assert len(sub) == 50 and sub.indices[0] == 0 and sub.indices[-1] == 299  # evenly spread, ends included
    due = []
    for epoch in range(8):
        trainer.current_epoch = epoch
        due.append(cb._due(trainer))
    assert [e for e, d in enumerate(due) if d] == [0, 3, 6, 7]
    with pytest.raises(ValueError):
        CollapseMonitor(every_n_epochs=0)
    with pytest.raises(RuntimeError, match="collapse_embeddings"):
        cb.evaluate(trainer, LightningModule())
