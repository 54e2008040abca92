"""LightningModule: DFER-CLIP with the official recipe (3-LR SGD, MultiStep), UAR/WAR and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.checkpoint import CheckpointMixin
from common.metrics.classification import UARWAR, uar_war
from common.weights import REGISTRY, resolve
from projects.dferclip.model import DFERCLIP, build_clip, load_clip_state_dict
from projects.dferclip.text import class_names


def resolve_clip_weights(clip_weights: str) -> Path:
    """A local file path, or a registered artifact name resolved through ``common.weights`` (never downloaded)."""
    if Path(clip_weights).is_file():
        return Path(clip_weights)
    if clip_weights in REGISTRY:
        return resolve(clip_weights)
    raise FileNotFoundError(f"CLIP weights {clip_weights!r}: neither a file nor a registered artifact name")


class DFERCLIPModule(CheckpointMixin, LightningModule):
    """DFER-CLIP training/evaluation.

    ``optimizer``: ``"sgd"`` (official: momentum 0.9, weight decay 1e-4 on every parameter) or ``"adamw"`` (same three
    groups; only for training a random CLIP from scratch, as the CPU demo does).
    ``clip_weights``: registered artifact name (``openai_clip_vit_b32``) or a local path, loaded at the start of
    ``fit`` (not when a checkpoint is restored); None keeps random weights (tests, demo, benchmark).
    Logs ``train/loss``, ``{val,test}/{loss,uar,war}``; the last confusion matrix of each stage is in
    ``confusion_matrices`` for ``ConfusionMatrixLogger``.
    """

    plain_weights_hint = "--model.clip_weights (CLIP weights; the authors' released .pth: predict --official)"

    def __init__(
        self,
        num_classes: int = 7,
        text_type: str = "class_descriptor",
        n_ctx: int = 8,
        class_specific_contexts: bool = True,
        temporal_layers: int = 1,
        num_frames: int = 16,
        temporal_heads: int = 8,
        temporal_dim_head: int = 64,
        temporal_mlp_dim: int = 1024,
        clip_arch: str | dict[str, int] = "ViT-B-32",
        clip_weights: str | None = "openai_clip_vit_b32",
        lr_temporal: float = 1e-2,
        lr_image: float = 1e-5,
        lr_prompt: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        logit_scale: float = 100.0,
        optimizer: str = "sgd",
    ) -> None:
        super().__init__()
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' (the official recipe) or 'adamw', got {optimizer!r}")
        self.save_hyperparameters()
        self.model = DFERCLIP(
            build_clip(clip_arch),
            num_classes=num_classes,
            text_type=text_type,
            n_ctx=n_ctx,
            class_specific_contexts=class_specific_contexts,
            temporal_layers=temporal_layers,
            num_frames=num_frames,
            temporal_heads=temporal_heads,
            temporal_dim_head=temporal_dim_head,
            temporal_mlp_dim=temporal_mlp_dim,
            logit_scale=logit_scale,
        )
        self.milestones = list(milestones) if milestones is not None else [30, 40]
        self.class_names = class_names(num_classes)
        self.val_metric = UARWAR(num_classes)
        self.test_metric = UARWAR(num_classes)
        self.confusion_matrices: dict[str, Tensor] = {}
        self.last_results: dict[str, dict[str, float]] = {}
        self._clip_loaded = False

    # --- weights -----------------------------------------------------------------------------------------------
    def load_pretrained_clip(self) -> None:
        """Load ``clip_weights`` into the encoders (and the prompt token embeddings) once."""
        if self.hparams.clip_weights is None or self._clip_loaded:
            return
        path = resolve_clip_weights(self.hparams.clip_weights)
        self.model.load_clip_weights(load_clip_state_dict(path), source=str(path))
        self._clip_loaded = True

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.load_pretrained_clip()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # CheckpointMixin: a checkpoint of this module, or one message
        self._clip_loaded = True  # the checkpoint's weights win over the pretrained file

    # --- steps -------------------------------------------------------------------------------------------------
    def forward(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` -> logits ``[B, C]``."""
        return self.model(video)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        video, label, _ = batch
        logits = self(video)
        loss = F.cross_entropy(logits, label)
        acc = (logits.argmax(-1) == label).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(label))
        self.log("train/acc", acc, batch_size=len(label))
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        video, label, _ = batch
        logits = self(video)
        self.log(f"{stage}/loss", F.cross_entropy(logits, label), batch_size=len(label), sync_dist=True)
        (self.val_metric if stage == "val" else self.test_metric).update(logits.argmax(-1), label)

    def _eval_epoch_end(self, stage: str) -> None:
        metric = self.val_metric if stage == "val" else self.test_metric
        cm = metric.confusion()
        res = uar_war(cm)
        self.log(f"{stage}/uar", res["uar"], prog_bar=True)
        self.log(f"{stage}/war", res["war"], prog_bar=True)
        self.confusion_matrices[stage] = cm.detach().cpu()
        self.last_results[stage] = {"uar": res["uar"].item(), "war": res["war"].item(), "n": int(cm.sum())}
        metric.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx: int) -> list[dict[str, Any]]:
        """Class probabilities per clip; printed one line per input."""
        video, _, index = batch
        probs = self(video).float().softmax(-1).cpu()
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        ds = getattr(dm, "predict_set", None)
        out = []
        for i, p in zip(index.tolist(), probs):
            if hasattr(ds, "paths"):
                name = str(ds.paths[i])
            elif hasattr(ds, "records"):
                name = str(ds.records[i].path)
            else:
                name = f"clip {i}"
            out.append(format_prediction(name, p, self.class_names))
        return out

    # --- optimisation ------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        groups = self.model.param_groups(hp.lr_temporal, hp.lr_image, hp.lr_prompt)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr_temporal, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:  # for training a random CLIP from scratch (demo); not the paper's recipe
            opt = torch.optim.AdamW(groups, lr=hp.lr_temporal, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=self.milestones, gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def format_prediction(name: str, probs: Tensor, names: list[str], echo: bool = True) -> dict[str, Any]:
    """``{"input", "probs": {class: p}, "pred"}`` for one clip, printed as one line when ``echo``."""
    d = {n: float(p) for n, p in zip(names, probs)}
    pred = max(d, key=d.get)
    if echo:
        print(f"{name}: {pred} ({d[pred]:.3f})  " + " ".join(f"{n}={p:.3f}" for n, p in d.items()), flush=True)
    return {"input": name, "probs": d, "pred": pred}
