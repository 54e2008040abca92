"""CGH pretraining LightningModule: student/EMA teacher, two aligned queues, cross-context relational loss."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common import distributed
from common.callbacks.collapse_monitor import CollapseMonitor
from common.checkpoint import CheckpointMixin
from common.metrics.collapse import mean_pairwise_cosine, relation_entropy
from common.metrics.knn import WeightedKNN
from common.nn.ema import ema_update_, frozen_copy
from common.nn.queue import FeatureQueue
from common.nn.schedules import warmup_cosine
from projects.cgh.loss import (
    combine_with_warmup,
    info_nce,
    parse_term,
    relation_logits,
    relational_loss,
    warmup_alpha,
)
from projects.cgh.model import CGHNetwork, shuffle_bn_forward, split_batchnorm_

QUEUE_FIELD = {"g": "global", "h": "hyper"}


def param_groups(module: torch.nn.Module, weight_decay: float, exclude_norm_bias: bool = True) -> list[dict]:
    """SGD groups: weight decay on weights of conv/linear layers; none on BN parameters and biases (1-D)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if exclude_norm_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class CGHModule(CheckpointMixin, LightningModule):
    """Cross-context (global <-> hypercolumn) relational self-supervised learning; ReSSL as a configuration.

    Args (defaults: CIFAR-sized ResNet-18 with the official loss settings):
        arch, cifar_stem, in_channels, width: the ResNet (``common.nn.resnet.ResNetBackbone``).
        hyper_layers: stages feeding the hypercolumn head (official: layer3, layer4); empty for ReSSL.
        global_dim, hyper_dim, mlp_hidden: head sizes (ImageNet official: 512, 512, 4096).
        head_bn: BN after the hidden layer of both heads' MLPs (SimCLR/MoCo v3 style; the official heads have
            none).
        queue_size: K, rows of each queue (the two queues share their write position).
        momentum: EMA momentum of the teacher (backbone and both heads).
        temp_global_student / temp_global_teacher: tau_s^g / tau_t^g (official 0.1 / 0.04).
        temp_hyper_student / temp_hyper_teacher: tau_s^h / tau_t^h (official 0.08 / 0.08).
        loss_terms: ``{"g2h": w, "h2g": w, "g2g": w, "h2h": w}`` subset ('a2b': teacher context a guides
            student context b). CGH: ``{"g2h": 0.5, "h2g": 0.5}``; ReSSL: ``{"g2g": 1.0}``.
        nce_temperature, warmup_loss_epochs: InfoNCE warm-up (official 0.2, 5 epochs; 0 disables it).
        lr, sgd_momentum, weight_decay, warmup_epochs, exclude_norm_bias_wd: SGD with linear warm-up + cosine.
        shuffle_bn: MoCo shuffle-BN for the teacher under DDP. For SyncBN instead, set ``shuffle_bn: false`` and
            ``trainer.sync_batchnorm: true``. On one device it shuffles the teacher's batch when ``split_bn > 1``.
        split_bn: ghost BN in both backbones: training statistics over ``split_bn`` groups of the batch
            (``model.SplitBatchNorm2d``), the official single-GPU simulation of 8 GPUs. With the teacher's batch
            shuffled, student and teacher normalise different groups of images, so neither can match the other
            through batch statistics (the leak shuffle-BN removes). 1 = plain BN.
        num_classes, knn_k, knn_temperature, knn_feature: final kNN (``test``) on ``backbone`` (pooled, L2)
            or ``projection`` (global head output) features.
        collapse_every_n_epochs: period of the collapse monitor (``common.callbacks.collapse_monitor``) that
            every run attaches (0 turns it off). Each step also logs the entropy of the teacher's and the
            student's relation distributions (``train/rel_entropy_{teacher,student}_<c>``, as a fraction of
            ``log K``) and the mean cosine between queue rows (``train/queue_cos_<c>``).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        cifar_stem: bool = True,
        in_channels: int = 3,
        width: int = 64,
        hyper_layers: Sequence[str] = ("layer3", "layer4"),
        global_dim: int = 128,
        hyper_dim: int = 128,
        mlp_hidden: int = 4096,
        head_bn: bool = False,
        queue_size: int = 4096,
        momentum: float = 0.999,
        temp_global_student: float = 0.1,
        temp_global_teacher: float = 0.04,
        temp_hyper_student: float = 0.08,
        temp_hyper_teacher: float = 0.08,
        loss_terms: dict[str, float] | None = None,
        nce_temperature: float = 0.2,
        warmup_loss_epochs: float = 5,
        lr: float = 0.05,
        sgd_momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 5,
        exclude_norm_bias_wd: bool = True,
        shuffle_bn: bool = True,
        split_bn: int = 1,
        num_classes: int = 10,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
        knn_feature: str = "backbone",
        collapse_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        loss_terms = dict(loss_terms) if loss_terms is not None else {"g2h": 0.5, "h2g": 0.5}
        self.loss_terms = loss_terms
        contexts: list[str] = []
        for term in loss_terms:
            for c in parse_term(term):
                if c not in contexts:
                    contexts.append(c)
        if "h" in contexts and not hyper_layers:
            raise ValueError(f"loss_terms {loss_terms} use the hypercolumn context but hyper_layers is empty")
        if knn_feature not in ("backbone", "projection"):
            raise ValueError(f"knn_feature must be 'backbone' or 'projection', got {knn_feature!r}")
        self.contexts = tuple(sorted(contexts))  # ("g",), ("g", "h") or ("h",)
        self.student = CGHNetwork(
            arch,
            cifar_stem,
            in_channels,
            width,
            hyper_layers if "h" in contexts else (),
            global_dim,
            hyper_dim,
            mlp_hidden,
            head_bn,
        )
        if split_bn > 1:
            split_batchnorm_(self.student.backbone, split_bn)
        self.teacher = frozen_copy(self.student)
        dims = {QUEUE_FIELD[c]: (global_dim if c == "g" else hyper_dim) for c in self.contexts}
        self.queue = FeatureQueue(queue_size, dims)
        self.tau_s = {"g": temp_global_student, "h": temp_hyper_student}
        self.tau_t = {"g": temp_global_teacher, "h": temp_hyper_teacher}
        self.knn = WeightedKNN(num_classes, k=knn_k, T=knn_temperature)

    # ------------------------------------------------------------------------------------ pieces
    @torch.no_grad()
    def momentum_update(self) -> None:
        """teacher <- m * teacher + (1 - m) * student over all parameters (backbone and heads)."""
        ema_update_(self.teacher, self.student, self.hparams.momentum)

    def teacher_forward(self, x: Tensor) -> dict[str, Tensor]:
        """Teacher embeddings of the weak view (shuffle-BN across ranks when enabled); no gradient."""
        use_h = "h" in self.contexts
        with torch.no_grad():
            if self.hparams.shuffle_bn and not distributed.is_distributed() and self.hparams.split_bn > 1:
                perm = torch.randperm(x.shape[0], device=x.device)  # one device: shuffle within the batch
                out = self.teacher(x[perm], hyper=use_h)
                inv = torch.argsort(perm)
                return {k: v[inv] for k, v in out.items()}
            if self.hparams.shuffle_bn:
                return shuffle_bn_forward(lambda v: self.teacher(v, hyper=use_h), x)
            return self.teacher(x, hyper=use_h)

    def enqueue(self, z_teacher: dict[str, Tensor]) -> None:
        """Push the teacher embeddings of all ranks into both queues at the same rows."""
        self.queue.enqueue({QUEUE_FIELD[c]: z_teacher[c].detach() for c in self.contexts})

    def steps_per_epoch(self) -> int:
        t = self._trainer
        if t is None:
            return 1
        n = t.num_training_batches
        if not isinstance(n, int) or n <= 0 or math.isinf(n):
            total, epochs = t.estimated_stepping_batches, max(1, t.max_epochs or 1)
            return max(1, int(total // epochs))
        return max(1, n // max(1, t.accumulate_grad_batches))

    def loss_alpha(self) -> float:
        """Weight of the relational loss (1 after the InfoNCE warm-up)."""
        return warmup_alpha(self.global_step, int(round(self.hparams.warmup_loss_epochs * self.steps_per_epoch())))

    def step(self, batch: Sequence, alpha: float) -> tuple[Tensor, dict[str, Tensor]]:
        """One pretraining step without the optimiser: EMA, teacher, student, loss, enqueue.

        batch: ``(views, labels, indices)`` with views ``[weak [B,C,H,W], strong [B,C,H,W], *local crops]``.
        Returns ``(loss, logs)``.
        """
        views = batch[0]
        if len(views) < 2:
            raise ValueError(f"CGH needs at least 2 views (weak, strong), got {len(views)}")
        weak, strong, local = views[0], views[1], views[2:]
        z_s = self.student(strong, hyper="h" in self.contexts)
        self.momentum_update()
        z_t = self.teacher_forward(weak)
        # a snapshot: the queue is overwritten below, before backward needs it
        queues = {c: self.queue.features(QUEUE_FIELD[c]).clone() for c in self.contexts}
        s_logits = {c: relation_logits(z_s[c], queues[c]) for c in self.contexts}
        t_logits = {c: relation_logits(z_t[c], queues[c]) for c in self.contexts}
        local_logits = []
        if local:
            if "g" not in self.contexts:
                raise ValueError("multi-crop local views go through the global branch; loss_terms has no 'g'")
            local_logits = [relation_logits(self.student(v, hyper=False)["g"], queues["g"]) for v in local]
        rel, parts = relational_loss(s_logits, t_logits, self.loss_terms, self.tau_s, self.tau_t, local_logits)
        logs = {f"loss_{k}": v.detach() for k, v in parts.items()}
        logs.update(self.relation_stats(s_logits, t_logits, queues))
        nce = []
        if alpha < 1.0:
            for c in self.contexts:
                nce.append(info_nce(z_s[c], z_t[c], queues[c], self.hparams.nce_temperature))
                logs[f"loss_nce_{c}"] = nce[-1].detach()
        loss = combine_with_warmup(rel, nce, alpha)
        self.enqueue(z_t)
        logs["loss"] = loss.detach()
        logs["alpha"] = torch.tensor(alpha)
        return loss, logs

    @torch.no_grad()
    def relation_stats(
        self, s_logits: dict[str, Tensor], t_logits: dict[str, Tensor], queues: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Collapse signals of one step: relation entropies as a fraction of ``log K`` (1 = uniform: the
        target carries no information) and the mean cosine between (up to 256) queue rows."""
        log_k = math.log(self.hparams.queue_size)
        out = {}
        for c in self.contexts:
            out[f"rel_entropy_teacher_{c}"] = relation_entropy(t_logits[c], self.tau_t[c]) / log_k
            out[f"rel_entropy_student_{c}"] = relation_entropy(s_logits[c], self.tau_s[c]) / log_k
            q = queues[c]
            out[f"queue_cos_{c}"] = mean_pairwise_cosine(q[torch.linspace(0, len(q) - 1, min(256, len(q))).long()])
        return out

    @torch.no_grad()
    def collapse_embeddings(self, x: Tensor) -> dict[str, Tensor]:
        """Embeddings watched by the collapse monitor: pooled backbone features and the student's and
        teacher's head outputs (``student_g``, ``teacher_g``, and ``*_h`` with a hypercolumn head)."""
        use_h = "h" in self.contexts
        zs = self.student(x, hyper=use_h, with_pool=True)
        zt = self.teacher(x, hyper=use_h)
        out = {"backbone": zs["pool"]}
        for c in self.contexts:
            out[f"student_{c}"] = zs[c]
            out[f"teacher_{c}"] = zt[c]
        return out

    def collapse_queues(self) -> dict[str, Tensor]:
        """The filled rows of each queue (``queue_g``, ``queue_h``), for the collapse monitor."""
        n = self.queue.num_filled
        return {f"queue_{c}": self.queue.features(QUEUE_FIELD[c])[:n] for c in self.contexts}

    def configure_callbacks(self):
        if self.hparams.collapse_every_n_epochs <= 0:
            return []
        return [CollapseMonitor(every_n_epochs=self.hparams.collapse_every_n_epochs)]

    # ------------------------------------------------------------------------------- lightning
    def training_step(self, batch: Sequence, batch_idx: int) -> Tensor:
        loss, logs = self.step(batch, self.loss_alpha())
        bs = batch[0][0].shape[0]
        loss_log = logs.pop("loss")
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=bs)
        self.log("train/loss", loss_log, prog_bar=True, batch_size=bs)
        return loss

    @torch.no_grad()
    def knn_features(self, x: Tensor) -> Tensor:
        """L2-normalised features for kNN: pooled backbone output or the global projection."""
        if self.hparams.knn_feature == "projection":
            return self.student(x, hyper=False)["g"]
        return F.normalize(self.student.backbone(x), dim=1)

    def test_step(self, batch: Sequence, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y, idx = batch
        self.knn.update(self.knn_features(x), y, idx, train=dataloader_idx == 0)

    def on_test_epoch_end(self) -> None:
        acc = self.knn.compute()
        self.log(f"test/knn{self.hparams.knn_k}_top1", acc, rank_zero_only=False)
        self.knn.reset()

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.SGD(
            param_groups(self.student, h.weight_decay, h.exclude_norm_bias_wd), lr=h.lr, momentum=h.sgd_momentum
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        warm = int(round(h.warmup_epochs * per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warm, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
