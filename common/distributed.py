"""Small helpers for code that must be right both in one process and under DDP (any backend)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a default process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


@torch.no_grad()
def gather_cat(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, in rank order, without gradient.

    Every rank must pass the same shape (DistributedSampler's padding guarantees equal batch
    sizes with ``drop_last`` or a divisible dataset). ``[B, ...] -> [world * B, ...]``.
    """
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.batch = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Every rank holds a loss over the full gathered batch; the gradient for the local slice
        # is the sum of those ranks' gradients.
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start : start + ctx.batch]


def gather_cat_with_grad(x: Tensor) -> Tensor:
    """Like :func:`gather_cat`, but the local slice keeps its gradient (summed over ranks' losses)."""
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)
