"""Recall@K for retrieval: does any of a query's K nearest neighbours share its label?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


def _dedupe(emb: Tensor, labels: Tensor, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the first row of each dataset index (DDP samplers pad by repeating samples)."""
    order = torch.argsort(indices, stable=True)
    idx_sorted = indices[order]
    first = torch.ones_like(idx_sorted, dtype=torch.bool)
    first[1:] = idx_sorted[1:] != idx_sorted[:-1]
    keep = order[first]
    return emb[keep], labels[keep], indices[keep]


@torch.no_grad()
def recall_at_k(
    emb: Tensor,
    labels: Tensor,
    ks: Sequence[int] = (1, 2, 5, 10, 50, 100),
    indices: Tensor | None = None,
    chunk: int = 1024,
) -> dict[int, float]:
    """Recall@K of every item queried against all the others.

    Args:
        emb: ``[N, D]`` embeddings (L2-normalised here; similarity is cosine).
        labels: ``[N]`` integer labels.
        ks: the K values; a K of ``N - 1`` or more counts every other item.
        indices: ``[N]`` dataset indices; a query is excluded from its own neighbours by index
            (not by position), so items repeated under the same index never match themselves.
        chunk: queries per similarity block (memory ``chunk x N``).

    Returns ``{K: fraction of queries with at least one same-label item among their K nearest}``.
    """
    if emb.ndim != 2 or labels.shape != emb.shape[:1]:
        raise ValueError(f"expected emb [N, D] and labels [N], got {tuple(emb.shape)} and {tuple(labels.shape)}")
    n = emb.shape[0]
    if indices is None:
        indices = torch.arange(n, device=emb.device)
    emb = F.normalize(emb.float(), dim=1)
    kmax = min(max(ks), n - 1)
    if kmax < 1:
        raise ValueError("Recall@K needs at least two items")
    hits = {k: 0 for k in ks}
    for start in range(0, n, chunk):
        sim = emb[start : start + chunk] @ emb.T
        same_item = indices[start : start + chunk, None] == indices[None, :]
        sim.masked_fill_(same_item, float("-inf"))
        top = sim.topk(kmax, dim=1).indices
        match = labels[top] == labels[start : start + chunk, None]
        # an item excluded as "self" can still land in the top-K when fewer than K others exist
        valid = torch.gather(~same_item, 1, top)
        match &= valid
        first_hit = torch.where(match.any(1), match.float().argmax(1), torch.full_like(top[:, 0], kmax))
        for k in ks:
            hits[k] += int((first_hit < min(k, kmax)).sum())
    return {k: hits[k] / n for k in ks}


class RecallAtK(Metric):
    """Recall@K over an evaluation set gathered across batches and DDP ranks.

    ``update(emb [B, D], labels [B], indices [B])``; ``compute() -> {"recall@K": tensor}``.
    Rows repeated under one dataset index (DDP padding) are counted once.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, ks: Sequence[int] = (1, 2, 5, 10, 50, 100), **kwargs) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.add_state("emb", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")

    def update(self, emb: Tensor, labels: Tensor, indices: Tensor) -> None:
        self.emb.append(emb.detach().float())
        self.labels.append(labels.detach().long())
        self.indices.append(indices.detach().long())

    def compute(self) -> dict[str, Tensor]:
        emb, labels, indices = (_cat(x) for x in (self.emb, self.labels, self.indices))
        emb, labels, indices = _dedupe(emb, labels, indices)
        res = recall_at_k(emb, labels, self.ks, indices)
        return {f"recall@{k}": torch.tensor(v) for k, v in res.items()}


def _cat(x: list[Tensor] | Tensor) -> Tensor:
    return torch.cat(x) if isinstance(x, list) else x
