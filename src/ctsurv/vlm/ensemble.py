"""The six-question ensemble: a patient's prediction is the mean over their questions.

Per-question predictions (one row per patient and question: ``study_id, split, time, event,
risk`` and, for DeepHit, ``surv_at_cuts``) become per-patient tables in the same form as the
baselines' (``predictions`` and ``survival``), so :mod:`ctsurv.survival.evaluation` scores both
alike.  DeepSurv curves come from Breslow's baseline hazard on the training patients' mean
risks; DeepHit curves are the mean of the six step curves (and the mean risk, minus the
restricted mean survival time, is linear in the curve, so it equals the risk of the mean curve).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import DataError
from ..survival.evaluation import SURVIVAL_GRID, breslow_survival, survival_table


def ensemble_risks(per_question: pd.DataFrame, expected: int | None = None) -> pd.DataFrame:
    """Mean risk per patient: study_id, split, time, event, risk, n_questions (first-seen order).

    Args:
        per_question: one row per (study, question).
        expected: questions each patient should have (e.g. 6); fewer is logged, not an error,
            because a question may have no usable answer for a patient.
    """
    if per_question.empty:
        raise DataError("no per-question predictions to average")
    grouped = per_question.groupby("study_id", sort=False)
    out = grouped.agg(split=("split", "first"), time=("time", "first"), event=("event", "first"),
                      risk=("risk", "mean"), n_questions=("risk", "size")).reset_index()
    if expected is not None and (out["n_questions"] < expected).any():
        short = out[out["n_questions"] < expected]
        logging.getLogger(__name__).warning("%d patients have fewer than %d questions (e.g. %s)", len(short), expected,
                                            short["study_id"].iat[0])
    out["event"] = out["event"].astype(int)
    return out


def ensemble_curves(per_question: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Mean DeepHit S(c_k) per patient: (study ids, (n, K))."""
    ids, curves = [], []
    for sid, rows in per_question.groupby("study_id", sort=False):
        ids.append(str(sid))
        curves.append(np.mean(np.stack(rows["surv_at_cuts"].to_numpy()), axis=0))
    return ids, np.stack(curves)


def step_survival(surv_at_cuts: np.ndarray, cuts: np.ndarray, times) -> np.ndarray:
    """Step function through S(c_k), 1 before the first cut (as ``DeepHit.predict_survival``)."""
    surv = np.concatenate([np.ones((len(surv_at_cuts), 1)), surv_at_cuts], axis=1)
    pos = np.searchsorted(np.asarray(cuts, float), np.asarray(times, dtype=float), side="right")
    return surv[:, pos]


def patient_tables(per_question: pd.DataFrame, head: str, cuts=None, expected: int | None = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient ``predictions`` and ``survival`` (grid of ``SURVIVAL_GRID`` times) tables.

    Args:
        per_question: per-question predictions of every split (train needed for Breslow).
        head: ``deepsurv`` or ``deephit``.
        cuts: DeepHit's cuts.
    """
    patients = ensemble_risks(per_question, expected)
    grid = np.linspace(0.0, float(patients["time"].max()), SURVIVAL_GRID)
    if head == "deepsurv":
        train = patients[patients["split"] == "train"]
        if train.empty or not train["event"].any():
            raise DataError("Breslow's baseline hazard needs training patients with events in the predictions")
        surv = breslow_survival(train["risk"], train["time"], train["event"], patients["risk"], grid)
        return patients, survival_table(patients["study_id"], grid, surv)
    if head == "deephit":
        if cuts is None:
            raise DataError("DeepHit predictions need the model's cuts")
        ids, curves = ensemble_curves(per_question)
        order = pd.Series(range(len(ids)), index=ids).loc[patients["study_id"]].to_numpy()
        return patients, survival_table(patients["study_id"], grid, step_survival(curves[order], cuts, grid))
    raise ValueError(f"head must be deepsurv or deephit, got {head!r}")
