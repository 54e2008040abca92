"""MaskConModule: query encoder, momentum key encoder, labelled queue, MaskCon loss (or a baseline), retrieval eval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from common.callbacks.embedding_plot import EmbeddingPlot
from common.checkpoint import CheckpointMixin
from common.distributed import world_size
from common.metrics.retrieval import RecallAtK
from common.nn.ema import ema_update_, frozen_copy
from common.nn.queue import FeatureQueue
from common.nn.schedules import warmup_cosine
from projects.maskcon.loss import MODES, contrastive_loss
from projects.maskcon.model import MaskConNet


class MaskConModule(CheckpointMixin, LightningModule):
    """MaskCon (Feng & Patras, CVPR 2023) and the baselines of the official code, in the MoCo framework.

    Args:
        mode: ``maskcon``, ``selfcon`` (MoCo), ``supcon``, ``grafit`` or ``coins`` (see ``loss.py``).
        train_labels: ``coarse`` (the method) or ``fine`` (an oracle; with ``supcon`` = SupCon on fine labels).
        arch / cifar_stem / in_channels / width / norm: the backbone (``resnet18`` ... or ``smallcnn``).
        backbone_weights: torchvision weights loaded into the query backbone at the start of ``fit`` (an artifact
            name of ``common/weights.py`` such as ``resnet18_imagenet``, or a file); the official code starts from
            ImageNet weights. Not needed to evaluate or resume.
        proj_hidden / dim: projector widths (official 512 / 256).
        num_coarse: number of coarse classes (needed by ``coins``'s classifier).
        queue_size (K), momentum (m), t1 (T1, contrastive temperature), t2 (T2, soft-label temperature), w: as the
            paper; official defaults 8192, 0.99, 0.1, 0.05, 0.5.
        lr / sgd_momentum / weight_decay / warmup_epochs / schedule_epochs: SGD with linear warm-up then cosine per
            step; ``schedule_epochs`` (default: the trainer's ``max_epochs``) fixes the schedule's length.
        init_queue: fill the queue with real keys of the training set before the first epoch.
        recall_ks: the K of Recall@K (fine labels, L2-normalised backbone features).
        plot_embeddings / plot_max_points: t-SNE image of the test features at ``test``.
    """

    plain_weights_hint = "--model.backbone_weights"

    def __init__(
        self,
        mode: str = "maskcon",
        train_labels: str = "coarse",
        arch: str = "resnet18",
        cifar_stem: bool = True,
        in_channels: int = 3,
        width: int = 64,
        norm: str = "bn",
        backbone_weights: str | None = None,
        proj_hidden: int = 512,
        dim: int = 256,
        num_coarse: int | None = None,
        queue_size: int = 8192,
        momentum: float = 0.99,
        t1: float = 0.1,
        t2: float = 0.05,
        w: float = 0.5,
        lr: float = 0.02,
        sgd_momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 5,
        schedule_epochs: int | None = None,
        init_queue: bool = True,
        recall_ks: Sequence[int] = (1, 2, 5, 10, 50, 100),
        plot_embeddings: bool = True,
        plot_max_points: int = 2000,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
        if train_labels not in ("coarse", "fine"):
            raise ValueError(f"train_labels must be 'coarse' or 'fine', got {train_labels!r}")
        if mode == "coins" and not num_coarse:
            raise ValueError("mode 'coins' needs num_coarse (the classifier's output size)")
        self.save_hyperparameters()
        self.encoder_q = MaskConNet(arch, cifar_stem, in_channels, width, proj_hidden, dim, norm)
        self.encoder_k = frozen_copy(self.encoder_q)
        self.classifier = nn.Linear(self.encoder_q.out_dim, num_coarse) if mode == "coins" else None
        self.queue = FeatureQueue(queue_size, dim, with_labels=True)
        self.register_buffer("queue_ready", torch.zeros((), dtype=torch.bool))
        self.val_recall = RecallAtK(recall_ks)
        self.test_recall = RecallAtK(recall_ks)

    # ------------------------------------------------------------------ set-up
    def configure_callbacks(self):
        # checkpoints (best on val/recall@1, last.ckpt every epoch) come from common/cli.py
        if not self.hparams.plot_embeddings:
            return []
        return [EmbeddingPlot("embedding", ("fine", "coarse"), "index", max_points=self.hparams.plot_max_points)]

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        nc = getattr(dm, "num_coarse", None)
        if self.hparams.mode == "coins" and nc is not None and nc > self.hparams.num_coarse:
            raise ValueError(f"the data has {nc} coarse classes but model.num_coarse is {self.hparams.num_coarse}")
        if stage == "fit" and self.hparams.backbone_weights and self.trainer.ckpt_path is None:
            self.encoder_q.backbone.load_torchvision(_weights_file(self.hparams.backbone_weights))
            self.encoder_k.load_state_dict(self.encoder_q.state_dict())

    def on_train_start(self) -> None:
        if self.hparams.init_queue and not bool(self.queue_ready):
            self.fill_queue()

    def on_train_epoch_start(self) -> None:
        # the augmentation seed follows the epoch even when DDP wraps our sampler (its set_epoch does not reach us)
        ds = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(self.current_epoch)

    @torch.no_grad()
    def fill_queue(self) -> None:
        """Fill the queue with key embeddings of real training images (the official ``initiate_memorybank``).

        Key views go through the key encoder in train mode, as in the official code; every rank's batch is
        enqueued (gathered), so ``ceil(K / global batch)`` batches are used. When one pass over the training set
        gives fewer than K keys (Cars196: 8,064 keys for K = 8,192) it starts the pass again (the same views); the
        official code leaves those rows random, with random labels.
        """
        loader = self.trainer.train_dataloader
        needed, written = self.hparams.queue_size, 0
        while written < needed:
            before = written
            for batch in loader:
                (xk, _), coarse, fine, _ = self.trainer.strategy.batch_to_device(batch, self.device)
                _, k = self.encoder_k(xk)
                self.queue.enqueue(k, fine if self.hparams.train_labels == "fine" else coarse)
                written += k.shape[0] * world_size()
                if written >= needed:
                    break
            if written == before:
                raise RuntimeError("the training data loader is empty: cannot fill the queue")
        self.queue_ready.fill_(True)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.SGD(
            self.trainable_parameters(), lr=h.lr, momentum=h.sgd_momentum, weight_decay=h.weight_decay
        )

        # The step counts are read lazily: asking for them here would set up the training data before a checkpoint's
        # data-loader state is restored, and a resumed run would not continue where it stopped.
        def factor(step: int) -> float:
            if step == 0:
                return 0.0 if h.warmup_epochs > 0 else 1.0
            warm, total = self._schedule_steps()
            return warmup_cosine(step, warm, total)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _schedule_steps(self) -> tuple[int, int]:
        """(warm-up steps, total steps) of the LR schedule, from the batches per epoch and the epochs."""
        h = self.hparams
        steps_per_epoch = self.trainer.num_training_batches
        epochs = h.schedule_epochs or self.trainer.max_epochs
        if epochs is None or epochs < 0 or not math.isfinite(steps_per_epoch):
            raise ValueError("set trainer.max_epochs (or model.schedule_epochs) for the warm-up + cosine schedule")
        return int(round(h.warmup_epochs * steps_per_epoch)), int(epochs * steps_per_epoch)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.encoder_q.parameters())
        if self.classifier is not None:
            params += list(self.classifier.parameters())
        return params

    # ------------------------------------------------------------------ training
    def training_step(self, batch, batch_idx: int) -> Tensor:
        h = self.hparams
        (xk, xq), coarse, fine, _ = batch
        y = fine if h.train_labels == "fine" else coarse
        ema_update_(self.encoder_k, self.encoder_q, h.momentum)  # parameters only, before the forward (official)
        feat_q, q = self.encoder_q(xq)
        with torch.no_grad():
            _, k = self.encoder_k(xk)
        class_logits = self.classifier(feat_q) if self.classifier is not None else None
        # clones: the enqueue below writes in place into rows the backward pass still needs
        queue, queue_labels = self.queue.features().clone(), self.queue.labels.clone()
        loss = contrastive_loss(h.mode, q, k, queue, y, queue_labels, h.t1, h.t2, h.w, class_logits=class_logits)
        self.queue.enqueue(k, y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=xq.shape[0])
        return loss

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """Retrieval features: L2-normalised query-backbone output ``[B, out_dim]``."""
        return nn.functional.normalize(self.encoder_q.backbone(x), dim=1)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, _, fine, idx = batch
        self.val_recall.update(self.embed(x), fine, idx)

    def on_validation_epoch_end(self) -> None:
        res = self.val_recall.compute()  # already synchronised over ranks by the metric
        self.log_dict({f"val/{k}": v for k, v in res.items()})
        self.val_recall.reset()

    def test_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        x, coarse, fine, idx = batch
        emb = self.embed(x)
        self.test_recall.update(emb, fine, idx)
        return {"embedding": emb, "fine": fine, "coarse": coarse, "index": idx}

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_recall.compute().items()})
        self.test_recall.reset()


def _weights_file(name_or_path: str) -> Path:
    from common.weights import REGISTRY, resolve

    if name_or_path in REGISTRY:
        return resolve(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path} not found (give a file or an artifact of common/weights.py)")
    return path
