"""Projection heads."""

from __future__ import annotations

from torch import Tensor, nn


class MLPHead(nn.Module):
    """``num_layers`` linear layers, BN+ReLU between them, optional BN after the last.

    ``[B, in_dim] -> [B, out_dim]``; ``num_layers=1`` is a single linear layer.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        hidden_bn: bool = True,
        last_bn: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        for i in range(num_layers):
            last = i == num_layers - 1
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (hidden_bn and not last) and not (last and last_bn)))
            if not last:
                if hidden_bn:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.ReLU(inplace=True))
            elif last_bn:
                layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
