"""A FIFO feature queue (memory bank) whose state lives in buffers, gathered across DDP ranks."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.distributed import gather_cat


class FeatureQueue(nn.Module):
    """FIFO of ``size`` rows, with one or more named feature fields and optional integer labels.

    All fields are written at the same rows, so row ``j`` of every field (and ``labels[j]``) belongs
    to the same past sample. Rows start as random unit vectors with label ``-1``. State (features,
    labels, pointer, fill count) is in buffers, so it is saved in checkpoints and resumed exactly.
    """

    def __init__(self, size: int, dims: int | Mapping[str, int], with_labels: bool = False) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be positive, got {size}")
        self.size = size
        self.dims = {"default": dims} if isinstance(dims, int) else dict(dims)
        self.with_labels = with_labels
        for name, dim in self.dims.items():
            self.register_buffer(f"feat_{name}", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def features(self, name: str = "default") -> Tensor:
        """``[size, dim]`` rows of field ``name``."""
        if name not in self.dims:
            raise KeyError(f"queue has no field {name!r}; fields: {sorted(self.dims)}")
        return getattr(self, f"feat_{name}")

    @property
    def num_filled(self) -> int:
        """How many rows hold real (enqueued) samples, at most ``size``."""
        return int(self.filled)

    @torch.no_grad()
    def enqueue(self, feats: Tensor | Mapping[str, Tensor], labels: Tensor | None = None, gather: bool = True) -> None:
        """Write a batch (``[B, dim]`` per field, ``[B]`` labels) at the pointer, wrapping around.

        With ``gather`` the batch of every DDP rank is written, in rank order, so all ranks keep the
        same queue. A batch larger than the queue keeps only its last ``size`` rows.
        """
        fmap = {"default": feats} if isinstance(feats, Tensor) else dict(feats)
        if fmap.keys() != self.dims.keys():
            raise KeyError(f"enqueue got fields {sorted(fmap)}, queue has {sorted(self.dims)}")
        if self.with_labels and labels is None:
            raise ValueError("this queue stores labels: pass labels to enqueue")
        sizes = {v.shape[0] for v in fmap.values()}
        if len(sizes) != 1:
            raise ValueError(f"fields have different batch sizes: {sizes}")
        if gather:
            fmap = {k: gather_cat(v) for k, v in fmap.items()}
            labels = gather_cat(labels) if labels is not None else None
        n = next(iter(fmap.values())).shape[0]
        if n == 0:
            return
        rows = (int(self.ptr) + torch.arange(n, device=self.ptr.device)) % self.size
        if n > self.size:  # only the last `size` rows survive
            rows, keep = rows[-self.size :], slice(n - self.size, n)
        else:
            keep = slice(0, n)
        for name, value in fmap.items():
            buf = self.features(name)
            buf.index_copy_(0, rows, value[keep].to(buf.dtype))
        if labels is not None:
            self.labels.index_copy_(0, rows, labels[keep].to(torch.long))
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n))
