"""Tabular features for survival models: one-hot, impute and scale, fit on training rows only.

Fitting on the training split (or fold) alone keeps test information out of the medians,
means and category lists, as cross-validation requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError


def _is_categorical(col: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


@dataclass
class TabularEncoder:
    """One-hot categorical columns, median-impute and standardise numeric ones.

    Categorical columns (strings, categories, booleans): missing values take the training
    mode; one indicator per training level except the first (a reference level, so an
    unpenalised Cox model stays identifiable); unseen test levels encode as the reference.
    Numeric columns: missing values take the training median, then (x - mean) / sd (sd 1
    for a constant column).

    Attributes set by :meth:`fit`: ``columns`` (output names).
    """

    features: Sequence[str]
    levels: dict = field(default_factory=dict)
    fill: dict = field(default_factory=dict)
    mean: dict = field(default_factory=dict)
    sd: dict = field(default_factory=dict)
    columns: list = field(default_factory=list)

    def fit(self, df: pd.DataFrame) -> "TabularEncoder":
        missing = [c for c in self.features if c not in df.columns]
        if missing:
            raise DataError(f"feature columns not in the table: {', '.join(map(repr, missing))} (has: {', '.join(map(str, df.columns))})")
        self.columns = []
        for name in self.features:
            col = df[name]
            if col.isna().all():
                raise DataError(f"column '{name}' is empty in the training rows; drop it from the features")
            if _is_categorical(col):
                values = col.dropna().astype(str)
                self.fill[name] = values.mode().iloc[0]
                if isinstance(col.dtype, pd.CategoricalDtype):
                    present = set(values)
                    levels = [str(c) for c in col.cat.categories if str(c) in present]
                else:
                    levels = sorted(values.unique())
                self.levels[name] = levels
                self.columns += [f"{name}={lvl}" for lvl in levels[1:]]
            else:
                values = pd.to_numeric(col, errors="coerce").astype(float)
                bad = np.flatnonzero(np.isinf(values.to_numpy()))
                if bad.size:
                    raise DataError(f"column '{name}': infinite value at row {bad[0] + 2}; replace it or leave it empty")
                self.fill[name] = float(values.median())
                filled = values.fillna(self.fill[name])
                self.mean[name] = float(filled.mean())
                sd = float(filled.std(ddof=0))
                self.sd[name] = sd if sd > 0 else 1.0
                self.columns.append(name)
        return self

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encoded matrix, shape (n, len(columns)), float32."""
        parts = []
        for name in self.features:
            col = df[name]
            if name in self.levels:
                values = col.astype(object).where(col.notna(), self.fill[name]).astype(str).to_numpy()
                parts.append(np.stack([values == lvl for lvl in self.levels[name][1:]], axis=1).astype(np.float32)
                             if len(self.levels[name]) > 1 else np.zeros((len(df), 0), np.float32))
            else:
                values = pd.to_numeric(col, errors="coerce").astype(float).fillna(self.fill[name]).to_numpy()
                parts.append(((values - self.mean[name]) / self.sd[name]).astype(np.float32)[:, None])
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0), np.float32)

    def fit_transform(self, df: pd.DataFrame) -> np.ndarray:
        return self.fit(df).transform(df)


@dataclass
class Standardizer:
    """Column-wise (x - mean) / sd for dense feature matrices, fit on training rows."""

    mean: np.ndarray | None = None
    sd: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Standardizer":
        self.mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.sd).astype(np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)
