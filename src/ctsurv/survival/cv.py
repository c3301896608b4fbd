"""Cross-validated c-index of a survival model on any table.

Categorical columns are one-hot encoded and imputation and scaling are fit inside each
training fold.  Neural models hold out part of each training fold (stratified on event)
for early stopping.  Folds come from a seeded stratified K-fold or from a JSON file
(``{"folds": [{"train_idx": [...], "test_idx": [...]}, ...]}``, row positions in table
order), so results can be compared with other tools on identical folds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.tables import load_table
from ..errors import DataError
from .fit import TrainConfig
from .models import ModelSettings, build_model
from .tabular import TabularEncoder
from .validation import check_test_split, check_time_event

log = logging.getLogger(__name__)


#: The cohort contract's identifiers: they name a patient, they never describe one.
ID_COLUMNS = ("study_id", "patient_id")


def read_feature_table(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet feature table, numbers parsed as numbers (no bookkeeping columns)."""
    return load_table(path, as_text=False)


def default_features(table: pd.DataFrame, time_col: str, event_col: str, source: str = "table") -> list[str]:
    """Every column but time, event and identifiers.

    Identifiers are the contract's ``study_id``/``patient_id`` and any other text column
    whose every value differs (an id under another name): one-hot encoding it would give
    each training patient its own coefficient and the test patients none.
    """
    out = []
    for col in table.columns:
        if col in (time_col, event_col) or col in ID_COLUMNS:
            continue
        values = table[col].dropna()
        if len(values) > 2 and not pd.api.types.is_numeric_dtype(values) and values.astype(str).nunique() == len(values):
            raise DataError(f"{source}, column '{col}': every value differs, so it looks like an identifier, not a feature; "
                            "name the feature columns with --features")
        out.append(col)
    return out


def make_folds(event, k: int = 5, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (on event) shuffled K-fold: list of (train_idx, test_idx)."""
    from sklearn.model_selection import StratifiedKFold

    event = np.asarray(event, dtype=int)
    if k < 2:
        raise DataError(f"--folds must be at least 2, got {k}")
    if min(np.bincount(event, minlength=2)) < k:
        raise DataError(f"{k} folds need at least {k} events and {k} censored patients (have {event.sum()} events, {len(event) - event.sum()} censored)")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(event)), event)]


def read_folds(path: str | Path, n_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds from JSON ``{"folds": [{"train_idx": [...], "test_idx": [...]}, ...]}``."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        entries = spec["folds"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: expected JSON with a 'folds' list of {{'train_idx': [...], 'test_idx': [...]}} ({err})") from None
    folds = []
    for i, entry in enumerate(entries, start=1):
        try:
            lists = {name: list(entry[name]) for name in ("train_idx", "test_idx")}
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}, fold {i}: needs integer lists 'train_idx' and 'test_idx'") from None
        for name, values in lists.items():
            # 0.5 or "3" would be cut or cast to a row silently; true is 1 to numpy
            odd = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
            if odd:
                raise DataError(f"{path}, fold {i}, {name}: {odd[0]!r} is not a row index; row indices are whole "
                                "numbers (0-based positions in the table)")
        tr = np.asarray(lists["train_idx"], dtype=np.int64)
        te = np.asarray(lists["test_idx"], dtype=np.int64)
        for name, idx in (("train_idx", tr), ("test_idx", te)):
            bad = idx[(idx < 0) | (idx >= n_rows)]
            if bad.size:
                raise DataError(f"{path}, fold {i}, {name}: row index {bad[0]} outside the table's {n_rows} rows (0-based)")
        overlap = np.intersect1d(tr, te)
        if overlap.size:
            raise DataError(f"{path}, fold {i}: row index {overlap[0]} is in both train_idx and test_idx")
        folds.append((tr, te))
    if not folds:
        raise DataError(f"{path}: 'folds' is empty")
    return folds


def split_validation(train_idx, event, fraction: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (fit, validation), stratified on event."""
    from sklearn.model_selection import train_test_split

    strata = np.asarray(event, dtype=int)[train_idx]
    stratify = strata if min(np.bincount(strata, minlength=2)) >= 2 else None
    fit, val = train_test_split(train_idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(val)


def cross_validate(
    table: pd.DataFrame,
    time_col: str,
    event_col: str,
    model: str,
    features: Sequence[str] | None = None,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    k: int = 5,
    seed: int = 42,
    settings: ModelSettings | None = None,
    val_fraction: float = 0.2,
    source: str | Path = "table",
) -> dict:
    """Per-fold and mean ± sd Harrell c-index of ``model`` on ``table``.

    Args:
        table: one row per patient.
        time_col, event_col: follow-up columns (time > 0, event 0/1).
        model: coxph, deepsurv or deephit.
        features: feature columns (default: :func:`default_features`); never an identifier.
        folds: explicit (train_idx, test_idx) pairs; default a stratified ``k``-fold with ``seed``.
        settings: model settings (default: :class:`ModelSettings` with ``seed``).
        val_fraction: share of each training fold held out for early stopping (neural models).
        source: the table's file, named in error messages.

    Returns:
        JSON-ready dict: model, features, folds [{fold, n_train, n_test, events_test,
        cindex, fit_seconds}], mean, sd (sample sd over folds).
    """
    source = str(source)
    for col in (time_col, event_col):
        if col not in table.columns:
            raise DataError(f"{source}: column '{col}' not in the table (has: {', '.join(map(str, table.columns))})")
    time, event = check_time_event(table[time_col].to_numpy(), table[event_col].to_numpy(), source, time_col, event_col)
    if features:
        features = list(features)
        ids = [c for c in features if c in ID_COLUMNS or c in (time_col, event_col)]
        if ids:
            raise DataError(f"{source}: {ids} cannot be features (identifiers, time and event describe no patient); drop them from --features")
    else:
        features = default_features(table, time_col, event_col, source)
    if not features:
        raise DataError(f"{source}: no feature columns: pass --features or add columns besides time, event and the ids")
    if folds is None:
        folds = make_folds(event, k, seed)
    settings = settings or ModelSettings(train=TrainConfig(seed=seed))
    from sksurv.metrics import concordance_index_censored

    rows = []
    for i, (train_idx, test_idx) in enumerate(tqdm(folds, desc=f"cv {model}", unit="fold"), start=1):
        where = f"fold {i}"
        check_test_split(time[test_idx], event[test_idx], what=f"{where} test rows")
        encoder = TabularEncoder(features).fit(table.iloc[train_idx])
        x = encoder.transform(table)
        m = build_model(model, settings)
        if model == "coxph":
            m.fit(x[train_idx], time[train_idx], event[train_idx])
        else:
            fit_idx, val_idx = split_validation(train_idx, event, val_fraction, seed)
            m.fit(x[fit_idx], time[fit_idx], event[fit_idx], x[val_idx], time[val_idx], event[val_idx])
        risk = m.predict_risk(x[test_idx])
        c = concordance_index_censored(event[test_idx], time[test_idx], risk)[0]
        rows.append(
            {
                "fold": i,
                "n_train": int(len(train_idx)),
                "n_test": int(len(test_idx)),
                "events_test": int(event[test_idx].sum()),
                "cindex": float(c),
                "fit_seconds": float(m.fit_seconds),
            }
        )
        log.info("fold %d: c-index %.4f (%d test rows)", i, c, len(test_idx))
    scores = np.array([r["cindex"] for r in rows])
    return {
        "model": model,
        "features": features,
        "folds": rows,
        "mean": float(scores.mean()),
        "sd": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
    }
