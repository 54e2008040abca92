"""Weighted kNN accuracy during self-supervised pretraining (InstDisc/ReSSL monitor), DDP-safe.

At the end of every ``every_n_epochs``-th training epoch (epoch 0 included) and of the last one, the
callback embeds a labeled memory set and a query set with the module's feature function (in eval mode,
no gradient), and logs the weighted kNN top-1 (``common.metrics.knn.WeightedKNN``: votes
``exp(cos/T)`` over the k nearest memory items). Under DDP each rank embeds its shard
(``DistributedSampler``, no shuffling); the metric gathers all ranks and drops the padding duplicates by
dataset index, so the accuracy equals the single-process one.

The datamodule provides ``knn_datasets() -> (memory, query)`` whose items are ``(image, label, index)``;
the LightningModule provides the feature function (``knn_features(x) -> [B, D]`` by default).
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from common.metrics.knn import WeightedKNN


class KNNMonitor(Callback):
    """Logs ``log_name`` (default ``knn/top1``) every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: evaluation period in epochs (official CGH/ReSSL: 10, and after epoch 0).
        k, temperature: kNN neighbours and vote temperature (official: 20, 0.07).
        num_classes: classes of the labels; None reads ``trainer.datamodule.num_classes``.
        feature_method: name of the LightningModule method mapping a batch of images to features.
        batch_size, num_workers: of the embedding loaders.
        log_name: metric name.
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        k: int = 20,
        temperature: float = 0.07,
        num_classes: int | None = None,
        feature_method: str = "knn_features",
        batch_size: int = 512,
        num_workers: int = 0,
        log_name: str = "knn/top1",
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.k, self.temperature = k, temperature
        self.num_classes = num_classes
        self.feature_method = feature_method
        self.batch_size, self.num_workers = batch_size, num_workers
        self.log_name = log_name
        self.history: list[tuple[int, float]] = []

    def _loader(self, ds: Dataset, trainer: Trainer) -> DataLoader:
        sampler = None
        if trainer.world_size > 1:
            sampler = DistributedSampler(
                ds, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False, drop_last=False
            )
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, sampler=sampler, num_workers=self.num_workers)

    def _due(self, trainer: Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> float:
        """Embeds memory and query sets and returns the weighted kNN top-1 (same value on every rank)."""
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "knn_datasets"):
            raise RuntimeError("KNNMonitor needs a datamodule with knn_datasets() -> (memory, query)")
        fn = getattr(pl_module, self.feature_method, None)
        if fn is None:
            raise RuntimeError(f"KNNMonitor: {type(pl_module).__name__} has no method {self.feature_method!r}")
        num_classes = self.num_classes or getattr(dm, "num_classes", None)
        if not num_classes:
            raise RuntimeError("KNNMonitor: num_classes not given and the datamodule has no num_classes")
        memory, query = dm.knn_datasets()
        metric = WeightedKNN(num_classes, k=self.k, T=self.temperature).to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            for ds, is_train in ((memory, True), (query, False)):
                for x, y, idx in self._loader(ds, trainer):
                    x = x.to(pl_module.device, non_blocking=True)
                    metric.update(fn(x), y.to(pl_module.device), idx.to(pl_module.device), train=is_train)
            acc = float(metric.compute())
        finally:
            pl_module.train(was_training)
        return acc

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._due(trainer):
            return
        acc = self.evaluate(trainer, pl_module)
        self.history.append((trainer.current_epoch, acc))
        pl_module.log(self.log_name, acc, prog_bar=True, rank_zero_only=False)
