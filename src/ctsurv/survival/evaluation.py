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


def evaluate_predictions(predictions: pd.DataFrame, survival: pd.DataFrame | None, km_path, title: str = "",
                         n_boot: int = 1000, seed: int = 0, min_at_risk: int = 5) -> dict:
    """Test metrics (:func:`ctsurv.survival.metrics.evaluate`) and the Kaplan-Meier figure of one model."""
    from .km import km_figure
    from .metrics import evaluate

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
