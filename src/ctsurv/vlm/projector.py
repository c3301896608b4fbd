"""The projection W from visual-token space (C) into the decoder's embedding space (H).

"linear" is the paper's W (one matrix and bias, 2048 -> H); "mlp2x_gelu" is LLaVA-1.5's
Linear-GELU-Linear, named as in LLaVA's ``multimodal_projector/builder.py``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from .config import PROJECTORS


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A projector of the given kind, (..., in_dim) -> (..., out_dim)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")


class FeatureStandardizer(nn.Module):
    """Fixed per-channel standardisation of the visual tokens before W: ``(x - mean) / std``.

    Why: a pooled CNN feature is mostly an offset shared by every patient (the demo encoder's
    tokens have norm ~18 and a between-patient spread of a few percent of it), while the
    decoder's text embeddings have norm ~0.3, so a default-initialised W maps every patient to
    nearly the same large vector and the decoder learns to ignore it.  For the linear W this is
    a re-parameterisation of the same model (``W diag(1/std)``, ``b - W (mean/std)``): the paper's
    W, better conditioned for training.  Identity until :meth:`fit`; the statistics are fixed
    (buffers, saved with the model), fitted once on the training patients' tokens.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean.to(features)) / self.std.to(features)

    @torch.no_grad()
    def fit(self, chunks: Iterable[np.ndarray], min_std: float = 1e-6) -> dict:
        """Per-channel mean and standard deviation over every token of ``chunks`` ((..., C) arrays).

        Accumulated in float64 chunk by chunk, so a store larger than memory can be streamed.
        Returns ``{"tokens": n, "mean_norm": ..., "std_median": ...}`` for the log.
        """
        dim = self.mean.numel()
        n, total, squares = 0, np.zeros(dim), np.zeros(dim)
        for chunk in chunks:
            x = np.asarray(chunk, dtype=np.float64).reshape(-1, dim)
            n += len(x)
            total += x.sum(axis=0)
            squares += np.square(x).sum(axis=0)
        if n < 2:
            raise ValueError(f"fitting the feature standardiser needs at least 2 visual tokens, got {n}")
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
        std = np.maximum(std, min_std)
        self.mean.copy_(torch.from_numpy(mean))
        self.std.copy_(torch.from_numpy(std))
        return {"tokens": int(n), "mean_norm": float(np.linalg.norm(mean)), "std_median": float(np.median(std))}
