"""Weighted k-nearest-neighbour classification (InstDisc / DINO / ReSSL monitor style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from common.metrics.retrieval import _cat, _dedupe


@torch.no_grad()
def weighted_knn_scores(
    train_feats: Tensor,
    train_labels: Tensor,
    query_feats: Tensor,
    num_classes: int,
    k: int = 20,
    T: float = 0.07,
    chunk: int = 512,
) -> Tensor:
    """Class scores ``[Nq, C]``: each of the ``k`` most cosine-similar training items votes for its
    label with weight ``exp(sim / T)``. Features are L2-normalised here."""
    train = F.normalize(train_feats.float(), dim=1)
    query = F.normalize(query_feats.float(), dim=1)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, query.shape[0], chunk):
        sim, idx = (query[start : start + chunk] @ train.T).topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[idx].long(), (sim / T).exp())
        out.append(votes)
    return torch.cat(out) if out else torch.zeros(0, num_classes, device=query.device)


class WeightedKNN(Metric):
    """Top-1 accuracy of :func:`weighted_knn_scores`, with the bank and queries gathered over ranks.

    ``update(feats, labels, indices, train=True)`` adds to the bank, ``train=False`` to the queries;
    ``compute()`` returns the accuracy of the queries against the bank.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, k: int = 20, T: float = 0.07, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.k, self.T = num_classes, k, T
        for split in ("train", "query"):
            for field in ("feats", "labels", "indices"):
                self.add_state(f"{split}_{field}", default=[], dist_reduce_fx="cat")

    def update(self, feats: Tensor, labels: Tensor, indices: Tensor, train: bool) -> None:
        split = "train" if train else "query"
        getattr(self, f"{split}_feats").append(feats.detach().float())
        getattr(self, f"{split}_labels").append(labels.detach().long())
        getattr(self, f"{split}_indices").append(indices.detach().long())

    def compute(self) -> Tensor:
        if len(self.train_feats) == 0 or len(self.query_feats) == 0:
            raise RuntimeError("WeightedKNN needs both training (bank) and query features before compute()")
        bank = _dedupe(_cat(self.train_feats), _cat(self.train_labels), _cat(self.train_indices))
        query = _dedupe(_cat(self.query_feats), _cat(self.query_labels), _cat(self.query_indices))
        scores = weighted_knn_scores(bank[0], bank[1], query[0], self.num_classes, self.k, self.T)
        return (scores.argmax(1) == query[1]).float().mean()
