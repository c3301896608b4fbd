"""Test metrics of one model from its stored predictions (baselines and the joint model alike).

A model's outputs are two tables: ``predictions`` (study_id, split, time, event, risk; one
row per patient) and ``survival`` (study_id, then S(t) on a time grid, columns named by t).
Everything here reads those, so any model that writes them is evaluated the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError

SURVIVAL_GRID = 100  # points of the stored survival curves


def survival_table(study_ids, grid, surv) -> pd.DataFrame:
    """The stored form of survival curves: study_id, then one column per grid time."""
    table = pd.DataFrame(np.asarray(surv, float), columns=[repr(float(t)) for t in grid])
    table.insert(0, "study_id", np.asarray(study_ids).astype(str))
    return table


def survival_fn(survival: pd.DataFrame, study_ids):
    """Step interpolation of stored curves: times -> (n, len(times))."""
    grid = np.array([float(c) for c in survival.columns[1:]])
    values = survival.set_index("study_id").loc[list(study_ids)].to_numpy(float)

    def fn(times):
        pos = np.clip(np.searchsorted(grid, np.asarray(times, float), side="right") - 1, 0, len(grid) - 1)
        return values[:, pos]

    return fn


def breslow_survival(train_risk, train_time, train_event, risk, times) -> np.ndarray:
    """Survival curves of log-risks through Breslow's baseline hazard (scikit-survival).

    Args:
        train_risk, train_time, train_event: the training patients (baseline hazard).
        risk: log-risks of the patients to predict, shape (n,).
        times: evaluation times.

    Returns:
        S(t) = S_0(t)^exp(risk), shape (n, len(times)); clipped to the estimator's domain.
    """
    from sksurv.linear_model.coxph import BreslowEstimator

    est = BreslowEstimator().fit(np.asarray(train_risk, float), np.asarray(train_event, bool), np.asarray(train_time, float))
    fns = est.get_survival_function(np.asarray(risk, float))
    times = np.asarray(times, float)
    return np.stack([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns])


PREDICTION_COLUMNS = ("study_id", "split", "time", "event", "risk")


def check_predictions(predictions: pd.DataFrame, what: str = "predictions") -> pd.DataFrame:
    """Refuse a predictions table without its columns or with a non-finite risk.

    A NaN risk is not an error in pandas or in the metrics' libraries: it silently drops or
    reorders patients (a different c-index, p-value and Kaplan-Meier split), so it stops here,
    naming the table and the studies.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise DataError(f"{what}: no column(s) {missing} (has {list(predictions.columns)}); "
                        "it is not a predictions table of ctsurv; rerun the rule that writes it")
    risk = pd.to_numeric(predictions["risk"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(risk))
    if bad.size:
        studies = ", ".join(f"'{s}'" for s in predictions["study_id"].iloc[bad[:5]])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise DataError(f"{what}: non-finite risk (NaN or infinite) for {bad.size} of {len(risk)} patients "
                        f"(study {studies}{more}); the model that wrote it diverged or read bad features: "
                        "fix its inputs and rerun the rule that wrote it")
    return predictions


def check_survival(survival: pd.DataFrame, what: str = "survival curves") -> pd.DataFrame:
    """Refuse stored survival curves with a non-finite value, naming the table and the studies."""
    values = survival.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if rows.size:
        studies = ", ".join(f"'{s}'" for s in survival.iloc[rows[:5], 0])
        more = f" and {rows.size - 5} more" if rows.size > 5 else ""
        raise DataError(f"{what}: non-finite survival probabilities for {rows.size} patients (study {studies}{more}); "
                        "rerun the rule that wrote it")
    return survival


def read_table(path, check=None):
    """A stored Parquet table, a missing or unreadable file as a DataError naming it; ``check``
    (``check_predictions`` / ``check_survival``) is applied with the path as its name."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a table' if path.is_dir() else 'not found'}; rerun the rule that writes it")
    try:
        table = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises its own types for a cut-short or foreign file
        raise DataError(f"{path}: not a readable Parquet table ({type(err).__name__}: {str(err)[:200]}); "
                        "it may be cut short: delete it and rerun the rule that writes it") from None
    return check(table, str(path)) if check is not None else table


def read_predictions(path) -> pd.DataFrame:
    """``predictions.parquet`` of a model run, checked (:func:`check_predictions`)."""
    return read_table(path, check_predictions)


def evaluate_predictions(predictions: pd.DataFrame, survival: pd.DataFrame | None, km_path, title: str = "",
                         n_boot: int = 1000, seed: int = 0, min_at_risk: int = 5) -> dict:
    """Test metrics (:func:`ctsurv.survival.metrics.evaluate`) and the Kaplan-Meier figure of one model.

    Non-finite risks or survival probabilities are refused (:func:`check_predictions`).
    """
    from .km import km_figure
    from .metrics import evaluate

    check_predictions(predictions)
    if survival is not None:
        check_survival(survival)

    tr = predictions[predictions["split"] == "train"]
    te = predictions[predictions["split"] == "test"]
    fn = survival_fn(survival, te["study_id"]) if survival is not None else None
    metrics = evaluate(tr["time"], tr["event"], te["time"], te["event"], te["risk"].to_numpy(), fn, n_boot=n_boot, seed=seed)
    metrics["km"] = km_figure(te["time"], te["event"], te["risk"], tr["risk"], km_path, title=title, min_at_risk=min_at_risk)
    return metrics


def oracle_cindex(predictions: pd.DataFrame, truth: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Harrell's c-index of the known log-hazard on the test patients of ``predictions``."""
    from .metrics import harrell_cindex

    te = predictions[predictions["split"] == "test"].merge(truth[["study_id", "log_hazard"]], on="study_id", how="inner")
    if te.empty:
        raise DataError("truth table shares no study_id with the test split")
    return harrell_cindex(te["time"], te["event"], te["log_hazard"], n_boot=n_boot, seed=seed).as_dict()
