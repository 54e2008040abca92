"""Linear probe on a frozen CGH/ReSSL backbone (official ``eval_lincls.py`` recipe).

The backbone is built from explicit hyperparameters (so the probe's own checkpoints reload without the
pretraining file) and, at ``fit`` start, loaded from the pretraining checkpoint's ``student.backbone.*``
weights. It stays in eval mode (BN statistics frozen) with no gradient; only a new ``fc`` trains
(N(0, 0.01) weights, zero bias; SGD lr 0.3, momentum 0.9, no weight decay, per-step cosine, no warm-up).
``val/best_acc1`` is the best top-1 over epochs, which is what the official script reports.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric

from common.checkpoint import check_finite, read_checkpoint
from common.nn.resnet import ResNetBackbone
from common.nn.schedules import warmup_cosine

BACKBONE_PREFIX = "student.backbone."
_ARCH_KEYS = ("arch", "cifar_stem", "in_channels", "width")


def load_pretrained_backbone(path: str | Path, prefix: str = BACKBONE_PREFIX) -> tuple[dict[str, Tensor], dict]:
    """Backbone state dict (torchvision key names) and hyperparameters of a pretraining checkpoint.

    Accepts a paperlab CGH/ReSSL checkpoint (``state_dict`` with ``student.backbone.*``) or one written by
    the official code (``{"net": {"module.encoder_q.<torchvision key>": ...}}``, the projection ``fc.*``
    dropped; no hyperparameters). Loaded with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretraining checkpoint not found")
    ckpt = read_checkpoint(path, "pretraining checkpoint")
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "net" in ckpt and isinstance(ckpt["net"], dict):  # official CGH / ReSSL-style checkpoint
        state = ckpt["net"]
        for official in ("module.encoder_q.", "encoder_q."):
            sub = {k[len(official) :]: v for k, v in state.items() if k.startswith(official)}
            sub = {k: v for k, v in sub.items() if not k.startswith("fc.")}
            if sub:
                check_finite(sub, path)
                return sub, {}
        raise ValueError(f"{path}: official checkpoint without 'module.encoder_q.*' weights")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no state_dict in the checkpoint (keys: {sorted(ckpt)[:8]})")
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(f"{path}: no '{prefix}*' weights (is it a CGH pretraining checkpoint?)")
    check_finite(sub, path)
    return sub, dict(ckpt.get("hyper_parameters", {}))


class CGHLinearProbe(LightningModule):
    """Frozen pretrained backbone (eval mode) + a trainable linear classifier.

    Args:
        pretrained: pretraining checkpoint (``last.ckpt`` of ``projects/cgh/main.py fit``); empty string =
            keep the random initialisation (the random-encoder baseline).
        arch, cifar_stem, in_channels, width: must match the pretraining run (checked when loading).
        num_classes: classifier outputs.
        lr, momentum, weight_decay: SGD (official 0.3, 0.9, 0); cosine per step over the run, no warm-up.
    """

    def __init__(
        self,
        pretrained: str = "",
        arch: str = "resnet18",
        cifar_stem: bool = True,
        in_channels: int = 3,
        width: int = 64,
        num_classes: int = 10,
        lr: float = 0.3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = ResNetBackbone(arch=arch, cifar_stem=cifar_stem, in_channels=in_channels, width=width)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.fc = nn.Linear(self.backbone.out_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        self._loaded = False
        self._fingerprint: float | None = None
        self.best_acc1 = 0.0
        self.acc1 = MeanMetric()  # mean over samples, synced across ranks at compute
        self.acc5 = MeanMetric()

    def load_backbone(self, path: str | Path) -> None:
        """Copy ``student.backbone.*`` of a pretraining checkpoint into the frozen backbone (strict)."""
        state, hp = load_pretrained_backbone(path)
        mismatch = {k: (hp[k], self.hparams[k]) for k in _ARCH_KEYS if k in hp and hp[k] != self.hparams[k]}
        if mismatch:
            raise ValueError(f"{path}: pretraining backbone differs from the probe's (checkpoint, probe): {mismatch}")
        self.backbone.load_state_dict(state, strict=True)
        self._loaded = True

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.pretrained and not self._loaded:
            self.load_backbone(self.hparams.pretrained)

    def train(self, mode: bool = True) -> CGHLinearProbe:
        super().train(mode)
        self.backbone.eval()  # BN statistics stay those of pretraining
        return self

    def _backbone_fingerprint(self) -> float:
        return float(sum(t.double().sum() for t in self.backbone.state_dict().values() if t.is_floating_point()))

    def on_fit_start(self) -> None:
        self._fingerprint = self._backbone_fingerprint()

    def on_fit_end(self) -> None:
        if self._fingerprint is not None and not math.isclose(
            self._fingerprint, self._backbone_fingerprint(), rel_tol=0, abs_tol=0
        ):
            raise RuntimeError("linear probe changed the frozen backbone (weights or BN statistics)")

    def forward(self, x: Tensor) -> Tensor:
        if self.backbone.training:  # Lightning restores per-module modes after validation; keep BN frozen
            self.backbone.eval()
        with torch.no_grad():
            feats = self.backbone(x)
        return self.fc(feats)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y, _ = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch, prefix: str) -> None:
        x, y, _ = batch
        logits = self(x)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, y), batch_size=x.shape[0], sync_dist=True)
        self.acc1.update((logits.argmax(1) == y).float())
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(y[:, None]).any(1).float()
        self.acc5.update(top5)

    def _eval_epoch_end(self, prefix: str) -> float:
        acc1, acc5 = float(self.acc1.compute()), float(self.acc5.compute())
        self.acc1.reset()
        self.acc5.reset()
        self.log(f"{prefix}/acc1", acc1, prog_bar=True)
        self.log(f"{prefix}/acc5", acc5)
        return acc1

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        acc1 = self._eval_epoch_end("val")
        if not self.trainer.sanity_checking:
            self.best_acc1 = max(self.best_acc1, acc1)
        self.log("val/best_acc1", self.best_acc1)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.SGD(self.fc.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 0, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
