"""Linear probes: can a table's columns be read from a feature store by a linear model?

A probe tells a user whether an image encoder "sees" what matters before any survival model
is trained on its features: for each named column, a ridge regression (standardised
features, the penalty chosen by efficient leave-one-out inside each training fold) is fit
in K folds, and its out-of-fold predictions are scored over all studies:

* continuous columns: R² (1 - residual / total sum of squares, around the overall mean);
  0 is "no better than the mean", negative is worse;
* binary columns (two distinct values, or ``name:present``): the area under the ROC curve
  of the ridge scores; 0.5 is chance.

Intervals are percentile bootstrap intervals over studies of the out-of-fold predictions,
and each fold's own value is kept too.  Several feature sets (e.g. a random-weights
encoder beside a trained one) are probed on the same rows and folds.

Column names may carry a transform: ``effusion:present`` is 1 where the column has a value
(not null, not empty), 0 elsewhere (e.g. a finding's side, or a ';'-joined list of sites).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError

log = logging.getLogger(__name__)

ALPHAS = np.logspace(-2, 5, 15)
TRANSFORMS = ("value", "present")
MIN_ROWS = 10


@dataclass(frozen=True)
class ProbeColumn:
    """A column to probe and how to read it (``value`` or ``present``)."""

    column: str
    transform: str = "value"

    @property
    def label(self) -> str:
        return self.column if self.transform == "value" else f"{self.column}:{self.transform}"

    @classmethod
    def parse(cls, spec: str) -> "ProbeColumn":
        name, _, transform = str(spec).partition(":")
        transform = transform or "value"
        if transform not in TRANSFORMS:
            raise DataError(f"probe column '{spec}': unknown transform '{transform}' (use one of {', '.join(TRANSFORMS)})")
        return cls(name, transform)


def column_values(table: pd.DataFrame, col: ProbeColumn, source: str = "table") -> tuple[np.ndarray, str]:
    """Target values (float, NaN where missing) and their kind ("continuous" or "binary").

    Raises:
        DataError: the column is missing, or not numeric/boolean without ``:present``.
    """
    if col.column not in table.columns:
        raise DataError(f"{source}: no column '{col.column}' (columns: {', '.join(map(str, table.columns))})")
    raw = table[col.column]
    if col.transform == "present":
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        return present.to_numpy(dtype=np.float64), "binary"
    if raw.dtype == object:  # text tables: booleans as words
        raw = raw.map(lambda v: {"true": 1.0, "false": 0.0}.get(v.strip().lower(), v) if isinstance(v, str) else v)
    if raw.dtype == bool or str(raw.dtype) == "boolean":
        values = raw.astype("float64").to_numpy()
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & raw.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}, row {row + 2}, column '{col.column}': {raw.iloc[row]!r} is not a number; "
                f"probe it as '{col.column}:present', or name a numeric column"
            )
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        rows = ", ".join(str(int(r) + 2) for r in infinite[:5]) + (f" and {infinite.size - 5} more" if infinite.size > 5 else "")
        raise DataError(f"{source}, column '{col.column}': infinite value(s) at row(s) {rows}; a probe target must be "
                        "finite: fix those cells or leave them empty (empty cells are left out)")
    distinct = np.unique(values[~np.isnan(values)])
    if len(distinct) == 2:
        values = np.where(np.isnan(values), np.nan, (values == distinct[1]).astype(np.float64))
        return values, "binary"
    return values, "continuous"


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return float("nan") if total == 0 else 1.0 - float(((y - pred) ** 2).sum()) / total


def auc_score(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the 0/1 labels ``y`` (NaN with a single class).

    The Mann-Whitney form (average ranks, so a tie counts one half): the value of
    scikit-learn's ``roc_auc_score`` at a fraction of its cost, which matters for a
    bootstrap of a thousand resamples per probe.
    """
    return float(_auc_rows(np.asarray(y, float)[None], np.asarray(score, float)[None])[0])


def _auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC of (B, n) labels and scores (NaN for rows with a single class)."""
    from scipy.stats import rankdata

    ranks = rankdata(score, axis=1)
    pos = y > 0.5
    n_pos = pos.sum(axis=1).astype(float)
    n_neg = y.shape[1] - n_pos
    u = np.where(pos, ranks, 0.0).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _r2_rows(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise R² of (B, n) targets and predictions (NaN where a row's target is constant)."""
    total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    resid = ((y - pred) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, np.nan, 1.0 - resid / total)


def bootstrap_values(y: np.ndarray, pred: np.ndarray, kind: str, n_boot: int, seed: int) -> np.ndarray:
    """The metric on ``n_boot`` resamples of the rows (with replacement), NaN resamples dropped.

    Resample b draws ``rng.integers(0, n, n)`` from ``default_rng(seed)`` in turn, so the
    resamples do not depend on how they are scored.
    """
    if n_boot <= 0:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    values = []
    # Scored in blocks: (block, n) arrays stay small whatever n and n_boot are.
    block = max(1, 2_000_000 // max(len(y), 1))
    for start in range(0, n_boot, block):
        idx = np.stack([rng.integers(0, len(y), len(y)) for _ in range(min(block, n_boot - start))])
        rows = (_r2_rows if kind == "continuous" else _auc_rows)(y[idx], pred[idx])
        values.append(rows[~np.isnan(rows)])
    return np.concatenate(values)


def _folds(y: np.ndarray, kind: str, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if kind == "binary":
        k = min(k, int(min(y.sum(), len(y) - y.sum())))
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(y))


def out_of_fold(x: np.ndarray, y: np.ndarray, folds) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold ridge predictions of ``y`` from ``x`` (standardised per training fold) and the chosen penalties."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros(len(y))
    alphas = []
    for train, test in folds:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
        model.fit(x[train], y[train])
        pred[test] = model.predict(x[test])
        alphas.append(float(model[-1].alpha_))
    return pred, alphas


def probe_one(x: np.ndarray, y: np.ndarray, kind: str, folds: int = 5, seed: int = 0,
              n_boot: int = 1000) -> dict:
    """Cross-validated ridge probe of one target.

    Returns:
        dict with ``metric`` ("r2"/"auc"), ``value``, ``ci_low``/``ci_high`` (95 % bootstrap),
        ``fold_values``, ``alphas`` and ``n`` (``n_positive`` for binary targets).
    """
    score = r2_score if kind == "continuous" else auc_score
    split = _folds(y, kind, folds, seed)
    pred, alphas = out_of_fold(x, y, split)
    boots = bootstrap_values(y, pred, kind, n_boot, seed)
    low, high = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan))
    out = {"metric": "r2" if kind == "continuous" else "auc", "value": score(y, pred),
           "ci_low": float(low), "ci_high": float(high),
           "fold_values": [score(y[test], pred[test]) for _, test in split], "alphas": alphas, "n": int(len(y))}
    if kind == "binary":
        out["n_positive"] = int(y.sum())
    return out


def probe_features(
    features: Mapping[str, np.ndarray],
    table: pd.DataFrame,
    columns: Sequence[str | ProbeColumn],
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    source: str = "table",
) -> dict:
    """Probe each column from each feature set (rows of ``table`` and of every array aligned).

    Rows where a column is missing are left out of that column's probe; a column with
    fewer than :data:`MIN_ROWS` rows, or a single value, is reported as skipped.

    Args:
        features: name -> (N, C) array, e.g. {"random": ..., "pretrained": ...}.
        table: N rows.
        columns: column specs (``name`` or ``name:present``).
        folds, seed, n_boot: cross-validation folds, seed of folds and bootstrap, resamples.
        source: how to name the table in errors.

    Returns:
        {"n": N, "folds": K, "feature_sets": [...], "targets": [{column, kind, n, results: {set: probe}}]}.
    """
    cols = [c if isinstance(c, ProbeColumn) else ProbeColumn.parse(c) for c in columns]
    for name, x in features.items():
        if len(x) != len(table):
            raise DataError(f"feature set '{name}' has {len(x)} rows for a table of {len(table)}")
    arrays = {name: np.asarray(x, dtype=np.float64) for name, x in features.items()}
    targets = []
    for col in cols:
        values, kind = column_values(table, col, source)
        keep = ~np.isnan(values)
        y = values[keep]
        entry = {"column": col.label, "kind": kind, "n": int(keep.sum())}
        if keep.sum() < MIN_ROWS or len(np.unique(y)) < 2 or (kind == "binary" and min(y.sum(), len(y) - y.sum()) < 2):
            entry["skipped"] = "too few rows or a single value"
            log.info("probe %s: skipped (%d rows, %d distinct values)", col.label, keep.sum(), len(np.unique(y)))
        else:
            entry["results"] = {name: probe_one(x[keep], y, kind, folds, seed, n_boot) for name, x in arrays.items()}
            log.info("probe %s: %s", col.label, ", ".join(
                f"{name} {r['metric']} {r['value']:.3f}" for name, r in entry["results"].items()))
        targets.append(entry)
    return {"n": int(len(table)), "folds": int(folds), "seed": int(seed), "n_boot": int(n_boot),
            "feature_sets": list(features), "targets": targets}


def probe_markdown(result: dict, title: str = "Linear probes") -> str:
    """The probe result as a Markdown table (one row per column, one value column per feature set)."""
    sets = result["feature_sets"]
    lines = [
        f"# {title}", "",
        f"Cross-validated ridge probes ({result['folds']}-fold, standardised features, penalty by leave-one-out "
        f"inside each training fold) on {result['n']} studies. Continuous columns: R² of the out-of-fold "
        "predictions (0 = the mean, 1 = perfect); binary columns: ROC AUC (0.5 = chance). "
        f"Brackets: 95 % bootstrap interval ({result['n_boot']} resamples).", "",
        "| column | kind | n | metric | " + " | ".join(sets) + " |",
        "|---|---|---|---|" + "---|" * len(sets),
    ]
    for t in result["targets"]:
        if "results" not in t:
            lines.append(f"| {t['column']} | {t['kind']} | {t['n']} | - | " + " | ".join(["skipped"] * len(sets)) + " |")
            continue
        metric = next(iter(t["results"].values()))["metric"]
        # A set not probed on this column (e.g. token features, probed only for local findings): "-".
        cells = [f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r else "-"
                 for r in (t["results"].get(s) for s in sets)]
        lines.append(f"| {t['column']} | {t['kind']} | {t['n']} | {'R²' if metric == 'r2' else 'AUC'} | " + " | ".join(cells) + " |")
    for note in result.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_probe(result: dict, out_dir: str | Path, stem: str = "probe", title: str = "Linear probes") -> tuple[Path, Path]:
    """Write ``{stem}.json`` and ``{stem}.md`` into ``out_dir``."""
    from .atomic import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write(js, lambda fh: fh.write(json.dumps(result, indent=1).encode()))
    atomic_write(md, lambda fh: fh.write(probe_markdown(result, title).encode()))
    return js, md


def read_id_table(path: str | Path, id_column: str) -> pd.DataFrame:
    """A CSV/TSV/Parquet table with string ids in ``id_column`` (unique)."""
    from .data.tables import load_table

    table = load_table(path)
    if id_column not in table.columns:
        raise DataError(f"{path}: no id column '{id_column}' (columns: {', '.join(map(str, table.columns))}); set --id-column")
    table = table.copy()
    table[id_column] = table[id_column].astype(str)
    dup = table[id_column].duplicated()
    if dup.any():
        raise DataError(f"{path}: id '{table.loc[dup, id_column].iloc[0]}' appears in more than one row")
    return table


def align(store_ids: Sequence[str], table: pd.DataFrame, id_column: str, source: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows of the store and of the table for the ids both have (store order)."""
    index = {s: i for i, s in enumerate(table[id_column])}
    rows = [(i, index[s]) for i, s in enumerate(store_ids) if s in index]
    if len(rows) < MIN_ROWS:
        raise DataError(f"{source}: only {len(rows)} of the store's {len(store_ids)} studies have a row; "
                        f"are the ids in column '{id_column}'?")
    if len(rows) < len(store_ids):
        log.info("%d of %d studies have no row in %s and are left out", len(store_ids) - len(rows), len(store_ids), source)
    store_rows = np.array([r[0] for r in rows])
    return store_rows, table.iloc[[r[1] for r in rows]].reset_index(drop=True)


def probe_stores(
    stores: Mapping[str, str | Path],
    table_path: str | Path,
    columns: Sequence[str],
    id_column: str = "study_id",
    feature: str = "pooled",
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict:
    """Probe ``columns`` of a table from one or more feature stores (rows matched by id).

    Only the studies present in every store and in the table are probed, so each feature
    set is scored on the same rows and folds.
    """
    from .features import FeatureStore

    table = read_id_table(table_path, id_column)
    opened = {name: FeatureStore(path) for name, path in stores.items()}
    common = [s for s in next(iter(opened.values())).study_ids if all(s in st for st in opened.values())]
    rows, aligned = align(common, table, id_column, str(table_path))
    ids = [common[i] for i in rows]
    features = {name: st.get(ids, feature) for name, st in opened.items()}
    result = probe_features(features, aligned, columns, folds=folds, seed=seed, n_boot=n_boot, source=str(table_path))
    result["stores"] = {name: str(path) for name, path in stores.items()}
    result["table"] = str(table_path)
    return result
