"""The paper's baselines on a cohort: CoxPH on the clinical table, DeepSurv and DeepHit on
clinical, text (clinical-sentence features), image (pooled image features) or both.

:func:`train_baseline` fits on the train split (early stopping on val), then writes risk
scores and survival curves for every patient; :func:`evaluate_baseline` scores those files (in the
same job: a second job per baseline cost more to start than to run).  Evaluation lives in
:mod:`ctsurv.survival.evaluation`, the results tables in :mod:`ctsurv.report`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .evaluation import SURVIVAL_GRID, survival_table
from .models import ModelSettings, build_model
from .paths import STORES
from .tabular import Standardizer, TabularEncoder
from .validation import check_time_event, check_training_events

log = logging.getLogger(__name__)

MODALITIES = ("clinical", "text", "image", "both")


def survival_rows(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows with follow-up, positions reset; follow-up checked (errors name the study rows)."""
    rows = cohort[cohort["time"].notna() & cohort["event"].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError("the cohort has no rows with follow-up (time and event); is this a survival dataset?")
    check_time_event(rows["time"].to_numpy(float), rows["event"].to_numpy(float), what="cohort")
    return rows


def load_features(
    rows: pd.DataFrame, modality: str, clinical: Sequence[str], stores: dict
) -> tuple[pd.DataFrame, np.ndarray | None, list[str]]:
    """Feature inputs of one modality.

    Args:
        rows: cohort rows with follow-up.
        modality: clinical, text, image or both.
        clinical: clinical column names (for ``clinical``).
        stores: ``{"text": path, "image": path}`` feature stores needed by the modality.

    Returns:
        (rows kept, dense features (n, d) or None for clinical, feature names).  Studies
        missing from a store (e.g. images skipped by QC) are dropped with a warning.
    """
    from ..features import FeatureStore

    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if modality == "clinical":
        if not clinical:
            raise ConfigError("modality 'clinical' needs clinical columns in the dataset's config entry")
        return rows, None, list(clinical)
    opened = []
    for kind in STORES[modality]:
        if kind not in stores or stores[kind] is None:
            raise ConfigError(f"modality {modality!r} needs the {kind} feature store")
        opened.append(FeatureStore(stores[kind]))
    ids = rows["study_id"].astype(str)
    keep = np.all([ids.map(lambda s, st=st: s in st).to_numpy() for st in opened], axis=0)
    if not keep.all():
        log.warning("%d of %d studies have no %s features and are left out", (~keep).sum(), len(keep), modality)
        rows = rows[keep].reset_index(drop=True)
    parts = [st.get(rows["study_id"].astype(str).tolist(), "pooled") for st in opened]
    names = [f"{kind}_{i}" for kind, part in zip(STORES[modality], parts) for i in range(part.shape[1])]
    return rows, np.concatenate(parts, axis=1), names


def select_inputs(model: str, settings: ModelSettings, x: np.ndarray, time: np.ndarray, event: np.ndarray,
                  train: np.ndarray, val: np.ndarray, input_dims: Sequence[int | None] = (None,),
                  weight_decays: Sequence[float] | None = None):
    """Fit ``model`` once per (input dimension, weight decay) and keep the best on validation.

    ``x`` is the standardised dense features; a dimension k projects them onto their first k
    principal components (fitted on the training rows; None keeps every feature).  The
    validation rows also drive each fit's early stopping, as for a single fit.

    Returns:
        (fitted model, its input matrix for every row, the choice: dims, weight_decay,
        val_cindex and every candidate's val c-index).
    """
    import copy

    from .coxnet import cindex

    decays = list(weight_decays) if weight_decays else [settings.train.weight_decay]
    components = None
    if any(k is not None for k in input_dims):
        z = x[train] - x[train].mean(0)
        components = np.linalg.svd(z, full_matrices=False)[2]
    best, tried = None, []
    for k in input_dims:
        if k is not None and k >= min(len(train), x.shape[1]):
            continue
        xk = x if k is None else (x - x[train].mean(0)) @ components[:k].T
        for wd in decays:
            s = copy.deepcopy(settings)
            s.train.weight_decay = float(wd)
            m = build_model(model, s)
            m.fit(xk[train], time[train], event[train], xk[val], time[val], event[val])
            c = cindex(time[val], event[val], m.predict_risk(xk[val]))
            tried.append({"dims": k, "weight_decay": float(wd), "val_cindex": round(c, 4)})
            if best is None or (np.isfinite(c) and not (c <= best[0])):
                best = (c, m, xk, tried[-1])
    if best is None:
        raise ConfigError(f"no input dimension in {list(input_dims)} fits {x.shape[1]} features and {len(train)} "
                          "training rows; add null to survival.input_dims")
    c, m, xk, choice = best
    if len(tried) > 1:
        log.info("%s: input chosen on validation %s (of %s)", model, choice, tried)
    return m, xk.astype(np.float32), {**choice, "candidates": tried}


def _split(rows, name):
    return np.flatnonzero(rows["split"].to_numpy() == name)


def train_baseline(
    cohort: pd.DataFrame,
    model: str,
    modality: str,
    clinical: Sequence[str],
    stores: dict,
    settings: ModelSettings,
    out_dir: str | Path,
    val_fraction: float = 0.2,
    input_dims: Sequence[int | None] = (None,),
    weight_decays: Sequence[float] | None = None,
) -> dict:
    """Fit one baseline and write its predictions.

    Writes to ``out_dir``: ``predictions.parquet`` (study_id, split, time, event, risk),
    ``survival.parquet`` (study_id, then S(t) at ``SURVIVAL_GRID`` times named by t) and
    ``model.json`` (settings, plus ``weights.safetensors`` for networks).

    Args:
        cohort: the cohort table.
        model: coxph (clinical only), deepsurv or deephit.
        modality: clinical, text, image or both.
        clinical: clinical column names of the dataset.
        stores: feature store paths by kind (``text``, ``image``).
        settings: model settings.
        out_dir: output folder.
        val_fraction: when the val split has no events, this share of train is held out
            for early stopping instead.
        input_dims, weight_decays: candidate input dimensions (principal components of the
            standardised dense features, fitted on train; None: every feature) and weight
            decays (None: the settings') of the networks on text / image / both features; each
            pair is fitted and the one with the best validation c-index is kept
            (:func:`select_inputs`; ``input.json`` records the choice).  One pair fits once.

    Returns:
        A summary dict (n per split, epochs, fit seconds).
    """
    if model == "coxph" and modality != "clinical":
        raise ConfigError("CoxPH is a baseline on the clinical table only (modality 'clinical')")
    rows, dense, names = load_features(survival_rows(cohort), modality, clinical, stores)
    time = rows["time"].to_numpy(float)
    event = rows["event"].to_numpy(float).astype(bool)
    train, val = _split(rows, "train"), _split(rows, "val")
    check_training_events(event[train], what=f"train split ({modality})")
    if dense is None:
        x = TabularEncoder(names).fit(rows.iloc[train]).transform(rows)
    else:
        x = Standardizer().fit(dense[train]).transform(dense)
    m = build_model(model, settings)
    if model == "coxph":
        m.fit(x[train], time[train], event[train])
    else:
        if len(val) < 2 or not event[val].any():
            from .cv import split_validation

            log.warning("val split has %d rows and %d events: holding out %.0f%% of train for early stopping",
                        len(val), int(event[val].sum()), 100 * val_fraction)
            train, val = split_validation(train, event, val_fraction, settings.train.seed)
        if dense is not None:
            m, x, choice = select_inputs(model, settings, x, time, event, train, val, input_dims, weight_decays)
        else:
            m.fit(x[train], time[train], event[train], x[val], time[val], event[val])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model != "coxph" and dense is not None:
        (out / "input.json").write_text(json.dumps(choice, indent=2), encoding="utf-8")
    risk = m.predict_risk(x)
    pd.DataFrame(
        {"study_id": rows["study_id"].astype(str), "split": rows["split"].astype(str), "time": time,
         "event": event.astype(int), "risk": risk}
    ).to_parquet(out / "predictions.parquet", index=False)
    grid = np.linspace(0.0, time.max(), SURVIVAL_GRID)
    survival_table(rows["study_id"], grid, m.predict_survival(x, grid)).to_parquet(out / "survival.parquet", index=False)
    if model == "coxph":
        (out / "model.json").write_text(json.dumps(m.state() | {"features": names}, indent=2), encoding="utf-8")
    else:
        m.save(out)
    summary = {"model": model, "modality": modality, "n_train": int(len(train)), "n_val": int(len(val)),
               "n_test": int(len(_split(rows, "test"))), "fit_seconds": m.fit_seconds}
    log.info("%s on %s: %s", model, modality, summary)
    return summary


def evaluate_baseline(out_dir: str | Path, title: str, n_boot: int = 1000, seed: int = 0, min_at_risk: int = 5) -> dict:
    """Test metrics and the Kaplan-Meier figure of a trained baseline, from the files it wrote.

    Reads ``predictions.parquet`` and ``survival.parquet`` of ``out_dir`` (what
    :func:`train_baseline` wrote; reading them back keeps the numbers those of the stored
    predictions) and writes ``metrics.json`` and ``km.png`` beside them
    (:func:`ctsurv.survival.evaluation.evaluate_predictions`).
    """
    from .evaluation import check_survival, evaluate_predictions, read_predictions, read_table

    out = Path(out_dir)
    metrics = evaluate_predictions(
        read_predictions(out / "predictions.parquet"), read_table(out / "survival.parquet", check_survival), out / "km.png",
        title=title, n_boot=n_boot, seed=seed, min_at_risk=min_at_risk,
    )
    with open(out / "metrics.json", "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
    return metrics
