"""CGH networks: a ResNet whose stages are returned explicitly, the global head and the hypercolumn head.

Student and teacher are two instances of :class:`CGHNetwork` (the teacher a frozen EMA copy), so the
intermediate maps are plain return values: no forward hooks and no state shared between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from common import distributed
from common.nn.heads import MLPHead
from common.nn.resnet import ResNetBackbone


class GlobalHead(nn.Module):
    """ReSSL's projection: ``L2norm(Linear(C, hidden) -> ReLU -> Linear(hidden, D))`` (no BN; ``head_bn`` adds a
    BN after the hidden layer, as SimCLR's and MoCo v3's heads have).

    forward(h ``[B, C]``, the GAP of the last stage) -> ``[B, D]`` unit vectors.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 128, head_bn: bool = False) -> None:
        super().__init__()
        self.mlp = MLPHead(in_dim, hidden_dim, out_dim, num_layers=2, hidden_bn=head_bn, last_bn=False)

    def forward(self, h: Tensor) -> Tensor:
        return F.normalize(self.mlp(h), dim=1)


class HypercolumnHead(nn.Module):
    """Hypercolumn head: stages resized to the last one's size, concatenated, 1x1 conv+BN+ReLU, GAP, MLP, L2.

    forward(maps: list of ``[B, C_i, H_i, W_i]`` in stage order) -> ``[B, D]`` unit vectors. Every map is
    resized bilinearly (align_corners=False) to ``(H_last, W_last)``; the conv maps ``sum C_i -> C_last``
    channels (bias-free, as the official ``reg_conv``). No per-stage scaling (the official ``kappa``
    weights are defined but unused).
    """

    def __init__(
        self, in_channels: Sequence[int], hidden_dim: int = 4096, out_dim: int = 128, head_bn: bool = False
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("HypercolumnHead needs at least one stage")
        self.in_channels = list(in_channels)
        width = self.in_channels[-1]
        self.reduce = nn.Sequential(
            nn.Conv2d(sum(self.in_channels), width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.mlp = MLPHead(width, hidden_dim, out_dim, num_layers=2, hidden_bn=head_bn, last_bn=False)

    def hypercolumn(self, maps: Sequence[Tensor]) -> Tensor:
        """Concatenated hypercolumn ``[B, sum C_i, H_last, W_last]``."""
        if len(maps) != len(self.in_channels):
            raise ValueError(f"HypercolumnHead built for {len(self.in_channels)} stages, got {len(maps)} maps")
        size = maps[-1].shape[-2:]
        resized = [
            m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in maps
        ]
        return torch.cat(resized, dim=1)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        u = self.reduce(self.hypercolumn(maps))
        return F.normalize(self.mlp(u.mean(dim=(2, 3))), dim=1)


class CGHNetwork(nn.Module):
    """Backbone + global head (+ hypercolumn head when ``hyper_layers`` is not empty).

    forward(x ``[B, C, H, W]``, hyper=True, with_pool=False) -> dict with ``"g"`` ``[B, D_g]`` and, when the
    hypercolumn head exists and ``hyper`` is True, ``"h"`` ``[B, D_h]`` (both L2-normalised); with ``with_pool``
    also ``"pool"`` ``[B, C4]``, the pooled last stage (the backbone feature, not normalised).
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
    ) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(arch=arch, cifar_stem=cifar_stem, in_channels=in_channels, width=width)
        self.hyper_layers = tuple(hyper_layers)
        known = tuple(self.backbone.stage_channels)
        for name in self.hyper_layers:
            if name not in known:
                raise ValueError(f"hyper_layers: unknown stage {name!r}; the backbone has {known}")
        order = [s for s in known if s in self.hyper_layers]
        if order != list(self.hyper_layers):
            raise ValueError(f"hyper_layers must be in stage order {known}, got {self.hyper_layers}")
        self.global_head = GlobalHead(self.backbone.out_dim, mlp_hidden, global_dim, head_bn)
        self.hyper_head = (
            HypercolumnHead(
                [self.backbone.stage_channels[s] for s in self.hyper_layers], mlp_hidden, hyper_dim, head_bn
            )
            if self.hyper_layers
            else None
        )
        last = known[-1]
        self._stages = tuple(dict.fromkeys((*self.hyper_layers, last)))
        self._last = last

    def forward(self, x: Tensor, hyper: bool = True, with_pool: bool = False) -> dict[str, Tensor]:
        use_hyper = hyper and self.hyper_head is not None
        stages = self._stages if use_hyper else (self._last,)
        maps = self.backbone.forward_stages(x, stages=stages)
        pool = maps[self._last].mean(dim=(2, 3))
        out = {"g": self.global_head(pool)}
        if with_pool:
            out["pool"] = pool
        if use_hyper:
            out["h"] = self.hyper_head([maps[s] for s in self.hyper_layers])
        return out


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from ``num_splits`` equal groups of the batch (ghost BN).

    It simulates ``num_splits`` devices on one (the official single-GPU path of CGH/MoCo): each group of
    consecutive samples is normalised by its own mean and variance; the running statistics are updated with
    the average over the groups. Evaluation is plain BN. Parameter and buffer names are BatchNorm2d's, so
    checkpoints load either way. A batch that ``num_splits`` does not divide is normalised as a whole.
    """

    def __init__(self, num_features: int, num_splits: int = 8, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        s = self.num_splits
        if not self.training or s == 1 or n % s or n // s < 2:
            return super().forward(x)
        mean = self.running_mean.repeat(s)
        var = self.running_var.repeat(s)
        # [N, C] -> [N/s, s*C]: group g of consecutive samples becomes channels g*C .. (g+1)*C - 1
        xg = x.view(s, n // s, c, h, w).transpose(0, 1).reshape(n // s, s * c, h, w)
        out = F.batch_norm(
            xg, mean, var, self.weight.repeat(s), self.bias.repeat(s), True, self.momentum or 0.1, self.eps
        )
        with torch.no_grad():
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
            self.num_batches_tracked.add_(1)
        return out.view(n // s, s, c, h, w).transpose(0, 1).reshape(n, c, h, w)


def split_batchnorm_(module: nn.Module, num_splits: int) -> nn.Module:
    """Replaces every plain ``BatchNorm2d`` inside ``module`` by :class:`SplitBatchNorm2d` (same state)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = SplitBatchNorm2d(
                child.num_features, num_splits, eps=child.eps, momentum=child.momentum, affine=child.affine
            )
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            split_batchnorm_(child, num_splits)
    return module


def shuffle_bn_forward(fn: Callable[[Tensor], Any], x: Tensor) -> Any:
    """MoCo's shuffle-BN under DDP: forward a batch that is shuffled across ranks, then unshuffle.

    Each rank passes its local ``x [B, ...]`` (same B on every rank); the global batch is gathered, permuted
    by one permutation broadcast from rank 0, each rank forwards its slice (so BN statistics mix images of
    all ranks), and the outputs (a tensor or a dict of tensors, ``[B, ...]`` each) come back in the original
    order. Without a process group this is just ``fn(x)``. Use under ``torch.no_grad()`` (teacher only).
    """
    if not distributed.is_distributed():
        return fn(x)
    b = x.shape[0]
    x_all = distributed.gather_cat(x)
    if x_all.shape[0] != b * distributed.world_size():
        raise RuntimeError(
            f"shuffle-BN needs the same batch size on every rank; gathered {x_all.shape[0]} "
            f"rows for {distributed.world_size()} ranks of local batch {b}"
        )
    perm = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(perm, src=0)
    unperm = torch.argsort(perm)
    r = distributed.rank()
    out = fn(x_all[perm[r * b : (r + 1) * b]])
    mine = unperm[r * b : (r + 1) * b]

    def _unshuffle(t: Tensor) -> Tensor:
        return distributed.gather_cat(t)[mine]

    if isinstance(out, dict):
        return {k: _unshuffle(v) for k, v in out.items()}
    return _unshuffle(out)
