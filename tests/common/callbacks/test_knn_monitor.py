"""KNNMonitor: schedule, eval/train mode handling, and its accuracy against a direct computation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import TensorDataset

from common.callbacks.knn_monitor import KNNMonitor


class _Indexed(TensorDataset):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, y, i


class _Module(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.modes: list[bool] = []

    def knn_features(self, x):
        self.modes.append(self.training)
        return self.proj(x)


def _by_hand(fm, ym, fq, yq, k, T):
    fm, fq = torch.nn.functional.normalize(fm, dim=1), torch.nn.functional.normalize(fq, dim=1)
    correct = 0
    for i in range(len(fq)):
        sims = fm @ fq[i]
        top = sims.argsort(descending=True)[:k]
        votes = torch.zeros(3)
        for j in top:
            votes[ym[j]] += torch.exp(sims[j] / T)
        correct += int(votes.argmax() == yq[i])
    return correct / len(fq)


def test_monitor_accuracy_schedule_and_mode():
    torch.manual_seed(0)
    xm, ym = torch.randn(30, 4), torch.randint(0, 3, (30,))
    xq, yq = torch.randn(11, 4), torch.randint(0, 3, (11,))
    dm = SimpleNamespace(knn_datasets=lambda: (_Indexed(xm, ym), _Indexed(xq, yq)), num_classes=3)
    module = _Module().train()
    trainer = SimpleNamespace(
        datamodule=dm, world_size=1, global_rank=0, current_epoch=0, max_epochs=25, sanity_checking=False
    )
    cb = KNNMonitor(every_n_epochs=10, k=5, temperature=0.1, batch_size=4)
    acc = cb.evaluate(trainer, module)
    with torch.no_grad():
        expected = _by_hand(module.proj(xm), ym, module.proj(xq), yq, k=5, T=0.1)
    assert acc == pytest.approx(expected)
    assert module.training and set(module.modes) == {False}  # features in eval mode, mode restored after
    due = []
    for epoch in range(25):
        trainer.current_epoch = epoch
        due.append(cb._due(trainer))
    assert [e for e, d in enumerate(due) if d] == [0, 10, 20, 24]
    with pytest.raises(ValueError):
        KNNMonitor(every_n_epochs=0)
