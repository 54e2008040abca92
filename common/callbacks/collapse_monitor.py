"""Representation-collapse monitor for self-supervised pretraining.

At the end of every ``every_n_epochs``-th training epoch (epoch 0 and the last one included) the callback
embeds a fixed, evenly spaced subset of the datamodule's labeled memory set (``knn_datasets()[0]``, the
set the kNN monitor uses) in eval mode without gradient, and logs for every embedding the module returns
(``collapse_embeddings(x) -> {name: [B, D]}``) and every memory bank it exposes (optional
``collapse_queues() -> {name: [K, D]}``):

* ``collapse/<name>/erank``: effective rank of the centred features (1 = all on one line);
* ``collapse/<name>/erank_frac``: the same divided by ``min(N, D)``;
* ``collapse/<name>/mean_cos``: mean cosine similarity between distinct samples (1 = all the same direction);
* ``collapse/<name>/std``: SimSiam's ``sqrt(D) * mean std`` of the L2-normalised embeddings (0 = collapsed).

Every rank embeds the same images, so the values are identical across DDP ranks. ``history`` keeps
``(epoch, {metric: value})`` for scripts (the CGH demo plots it).
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset, Subset

from common.metrics.collapse import collapse_stats


class CollapseMonitor(Callback):
    """Logs collapse statistics of the module's embeddings (and queues) every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: evaluation period in epochs.
        max_samples: embed at most this many memory images (evenly spaced over the set).
        batch_size, num_workers: of the embedding loader.
        embed_method: LightningModule method ``x [B, C, H, W] -> {name: [B, D]}``.
        queue_method: optional LightningModule method ``() -> {name: [K, D]}`` (skipped when absent).
        log_prefix: metric name prefix.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_samples: int = 1024,
        batch_size: int = 256,
        num_workers: int = 0,
        embed_method: str = "collapse_embeddings",
        queue_method: str = "collapse_queues",
        log_prefix: str = "collapse",
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2 (statistics need two samples), got {max_samples}")
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.batch_size, self.num_workers = batch_size, num_workers
        self.embed_method, self.queue_method = embed_method, queue_method
        self.log_prefix = log_prefix
        self.history: list[tuple[int, dict[str, float]]] = []

    def _subset(self, ds: Dataset) -> Dataset:
        n = len(ds)
        if n <= self.max_samples:
            return ds
        idx = torch.linspace(0, n - 1, self.max_samples).round().long().unique().tolist()
        return Subset(ds, idx)

    def _due(self, trainer: Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """Computes all statistics now; returns ``{"<prefix>/<name>/<stat>": value}``."""
        embed = getattr(pl_module, self.embed_method, None)
        if embed is None:
            raise RuntimeError(f"CollapseMonitor: {type(pl_module).__name__} has no method {self.embed_method!r}")
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "knn_datasets"):
            raise RuntimeError("CollapseMonitor needs a datamodule with knn_datasets() -> (memory, query)")
        memory, _ = dm.knn_datasets()
        loader = DataLoader(
            self._subset(memory), batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers
        )
        was_training = pl_module.training
        pl_module.eval()
        feats: dict[str, list[torch.Tensor]] = {}
        try:
            for batch in loader:
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                for name, z in embed(x.to(pl_module.device)).items():
                    feats.setdefault(name, []).append(z.detach().float())
        finally:
            pl_module.train(was_training)
        banks = {name: torch.cat(v) for name, v in feats.items()}
        queues = getattr(pl_module, self.queue_method, None)
        if queues is not None:
            for name, q in queues().items():
                if q.shape[0] >= 2:
                    banks[name] = q.detach().float()
        out: dict[str, float] = {}
        for name, z in banks.items():
            for stat, value in collapse_stats(z).items():
                out[f"{self.log_prefix}/{name}/{stat}"] = float(value)
        return out

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._due(trainer):
            return
        stats = self.evaluate(trainer, pl_module)
        self.history.append((trainer.current_epoch, stats))
        for name, value in stats.items():
            pl_module.log(name, value, rank_zero_only=False)
