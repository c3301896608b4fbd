"""The projection W from visual-token space (C) into the decoder's embedding space (H).

"linear" is the paper's W (one matrix and bias, 2048 -> H); "mlp2x_gelu" is LLaVA-1.5's
Linear-GELU-Linear, named as in LLaVA's ``multimodal_projector/builder.py``.
"""

from __future__ import annotations

from torch import nn

from .config import PROJECTORS


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A projector of the given kind, (..., in_dim) -> (..., out_dim)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")
