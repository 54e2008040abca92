"""UAR / WAR for (video) expression recognition, and averaging over cross-validation folds.

* WAR (weighted average recall) = overall accuracy = trace(CM) / sum(CM).
* UAR (unweighted average recall) = mean over classes of the per-class recall CM[c, c] / sum(CM[c, :]),
  rows = true class. Classes absent from the targets are left out of the mean (sklearn's row normalisation
  would give NaN for them); ``uar_war`` reports how many classes were present.

``UARWAR`` is a torchmetrics ``Metric`` accumulating the confusion matrix (summed across DDP ranks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix


def uar_war(confusion: Tensor) -> dict[str, Tensor]:
    """``confusion [C, C]`` (rows true, columns predicted, counts) -> ``{"uar", "war", "num_present"}`` in [0, 1]."""
    cm = confusion.double()
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {tuple(cm.shape)}")
    total = cm.sum()
    support = cm.sum(dim=1)
    present = support > 0
    war = cm.trace() / total if total > 0 else torch.tensor(float("nan"), dtype=cm.dtype)
    recall = cm.diagonal()[present] / support[present]
    uar = recall.mean() if present.any() else torch.tensor(float("nan"), dtype=cm.dtype)
    return {"uar": uar.float(), "war": war.float(), "num_present": present.sum()}


class UARWAR(MulticlassConfusionMatrix):
    """Confusion-matrix metric whose ``compute()`` returns ``{"uar", "war"}``; ``.confusion()`` gives the counts."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes=num_classes, normalize=None, **kwargs)

    def _local_confusion(self) -> Tensor:
        return super().compute()

    def confusion(self) -> Tensor:
        """The accumulated confusion matrix ``[C, C]`` of counts, summed over all ranks under DDP."""
        if self._is_synced:
            return self._local_confusion()
        with self.sync_context():
            return self._local_confusion().clone()

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        # torchmetrics syncs the states around compute(), so the local matrix here is already the global one
        res = uar_war(self._local_confusion())
        return {"uar": res["uar"], "war": res["war"]}


def fold_average(results: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Arithmetic mean (and population std under ``<key>_std``) over folds of each key common to all folds.

    This is the paper's protocol: metrics are computed per fold and then averaged (not pooled).
    """
    if not results:
        raise ValueError("fold_average needs at least one fold")
    keys = [k for k in results[0] if all(k in r for r in results)]
    out: dict[str, float] = {}
    for k in keys:
        vals = torch.tensor([float(r[k]) for r in results], dtype=torch.float64)
        out[k] = vals.mean().item()
        out[f"{k}_std"] = vals.std(unbiased=False).item()
    out["num_folds"] = float(len(results))
    return out
