"""Momentum (EMA) teachers."""

from __future__ import annotations

import copy

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """Deep copy of ``module`` with every parameter's ``requires_grad`` off (a teacher's start)."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, momentum: float, copy_buffers: bool = False) -> None:
    """In place: ``target = momentum * target + (1 - momentum) * source`` over parameters.

    Buffers (BN running statistics) are left alone unless ``copy_buffers``, then copied from
    ``source``. Both modules must have the same parameter names and shapes.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    tgt = dict(target.named_parameters())
    src = dict(source.named_parameters())
    if tgt.keys() != src.keys():
        diff = sorted(set(tgt) ^ set(src))[:5]
        raise ValueError(f"EMA target and source differ in parameters, e.g. {diff}")
    t_list = [tgt[k].data for k in tgt]
    s_list = [src[k].data for k in tgt]
    torch._foreach_mul_(t_list, momentum)
    torch._foreach_add_(t_list, s_list, alpha=1.0 - momentum)
    if copy_buffers:
        src_buf = dict(source.named_buffers())
        for name, buf in target.named_buffers():
            buf.copy_(src_buf[name])
