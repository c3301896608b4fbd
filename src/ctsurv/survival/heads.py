"""Survival networks: MLP heads for DeepSurv and DeepHit, and the residual adaptor.

The baselines use :class:`MLPHead` directly on features; the joint model (stage 2) puts a
:class:`ResidualAdaptor` on the decoder's mean hidden state and a head on top.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLPHead(nn.Module):
    """Feature vector -> survival output.

    Blocks of Linear -> ReLU -> BatchNorm -> Dropout with Kaiming-normal hidden weights
    (pycox's ``MLPVanilla``, so the benchmark compares like with like), then a linear
    output layer.

    Args:
        in_features: input width d.
        out_features: 1 for DeepSurv (log-risk), K + 1 for DeepHit (bins + beyond).
        hidden: widths of the hidden layers; empty gives a linear model.
        dropout: dropout probability after each hidden block.
        batch_norm: batch-normalise each hidden block.

    Shapes: (n, d) -> (n, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (32, 32),
        dropout: float = 0.1,
        batch_norm: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            linear = nn.Linear(width, h)
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            layers += [linear, nn.ReLU()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def deepsurv_head(in_features: int, **kwargs) -> MLPHead:
    """DeepSurv: one output, the log relative hazard."""
    return MLPHead(in_features, 1, **kwargs)


def deephit_head(in_features: int, num_cuts: int, **kwargs) -> MLPHead:
    """DeepHit: ``num_cuts`` bin logits plus one for "beyond the last cut"."""
    return MLPHead(in_features, num_cuts + 1, **kwargs)


class ResidualAdaptor(nn.Module):
    """``z_surv = z + MLP(z)`` with a bottleneck MLP (Linear -> GELU -> Linear).

    The output layer starts at zero, so the adaptor starts as the identity and training
    begins from the decoder's own representation.

    Args:
        dim: width of z.
        bottleneck: hidden width of the MLP.

    Shapes: (n, dim) -> (n, dim).
    """

    def __init__(self, dim: int, bottleneck: int = 256):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.up(self.act(self.down(z)))
