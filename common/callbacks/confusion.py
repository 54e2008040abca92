"""Confusion-matrix image after every validation / test epoch.

The LightningModule exposes the last matrix of each stage as ``pl_module.confusion_matrices[stage]``
(a ``[C, C]`` tensor of counts, rows = true class), filled in its ``on_*_epoch_end``; the callback
renders it (counts and row-normalised recall) to ``<log_dir>/confusion/<stage>_epoch<N>.png`` with the raw
counts beside it as ``.csv``, and adds the figure to TensorBoard when that is the logger.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def plot_confusion(
    confusion: torch.Tensor | np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
):
    """Write a confusion-matrix PNG (colour = row-normalised recall, text = count) and return the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    c = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}x{c} confusion matrix")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.6 * c + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


class ConfusionMatrixLogger(Callback):
    """Saves ``pl_module.confusion_matrices[stage]`` as an image after each validation/test epoch (rank 0)."""

    def __init__(self, class_names: Sequence[str] | None = None, stages: Sequence[str] = ("val", "test")) -> None:
        self.class_names = list(class_names) if class_names is not None else None
        self.stages = tuple(stages)
        self.saved: list[Path] = []

    def _save(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage not in self.stages or trainer.sanity_checking or not trainer.is_global_zero:
            return
        cms = getattr(pl_module, "confusion_matrices", {})
        if stage not in cms:
            return
        cm = cms[stage]
        names = self.class_names or getattr(pl_module, "class_names", None)
        out_dir = Path(trainer.log_dir or trainer.default_root_dir) / "confusion"
        path = out_dir / f"{stage}_epoch{trainer.current_epoch}.png"
        import matplotlib.pyplot as plt

        fig = plot_confusion(cm, path, names, title=f"{stage}, epoch {trainer.current_epoch}")
        np.savetxt(path.with_suffix(".csv"), np.asarray(cm.cpu()), fmt="%d", delimiter=",")
        logger = trainer.logger
        if logger is not None and hasattr(getattr(logger, "experiment", None), "add_figure"):
            logger.experiment.add_figure(f"{stage}/confusion", fig, global_step=trainer.global_step)
        plt.close(fig)
        self.saved.append(path)

    # *_end rather than *_epoch_end: Lightning calls callbacks' epoch-end hooks before the module's, where the
    # matrix is computed
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module, "test")
