"""Discrimination and calibration metrics on a test split.

Point estimates come from scikit-survival.  Bootstrap intervals and the paired model
comparison reuse one pair matrix per test split (Harrell's definition, as scikit-survival
counts it), so a thousand resamples cost two matrix products rather than a thousand calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from .validation import check_test_split, check_time_event

TIED_TOL = 1e-8


def _pairs(time, event, risk):
    """Comparable and concordant pair matrices (i, j), scikit-survival's definition.

    Pair (i, j) is comparable when i had an event and t_i < t_j, or t_i = t_j and j is
    censored; it scores 1 when risk_i > risk_j and 0.5 when the risks tie.

    Returns:
        (comparable (n, n) float64, score (n, n) float64).
    """
    t, e = time[:, None], event[:, None]
    comparable = e & ((t < time[None, :]) | ((t == time[None, :]) & ~event[None, :]))
    diff = risk[:, None] - risk[None, :]
    score = np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float))
    return comparable.astype(float), comparable * score


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Resample counts per patient, shape (n_boot, n)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _weighted_cindex(weights, comparable, score):
    num = ((weights @ score) * weights).sum(axis=1)
    den = ((weights @ comparable) * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


@dataclass
class CIndex:
    cindex: float
    lower: float
    upper: float
    n: int
    events: int

    def as_dict(self) -> dict:
        return asdict(self)


def harrell_cindex(time, event, risk, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> CIndex:
    """Harrell's c-index (scikit-survival) with a percentile bootstrap interval.

    Args:
        time, event: test follow-up, shape (n,).
        risk: predicted risk, shape (n,), higher = earlier event.
        n_boot: bootstrap resamples of patients (0 gives no interval: lower = upper = nan).
        seed: bootstrap seed.
        level: coverage of the interval.
    """
    time, event = check_time_event(time, event, what="test split")
    check_test_split(time, event)
    risk = np.asarray(risk, dtype=float)
    c = concordance_index_censored(event, time, risk, tied_tol=TIED_TOL)[0]
    lower = upper = float("nan")
    if n_boot:
        comparable, score = _pairs(time, event, risk)
        boots = _weighted_cindex(_bootstrap_weights(len(time), n_boot, seed), comparable, score)
        boots = boots[np.isfinite(boots)]
        lower, upper = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return CIndex(float(c), float(lower), float(upper), len(time), int(event.sum()))


def compare_cindex(time, event, risk_a, risk_b, n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap test of two models' c-index on the same patients.

    Both models are scored on the same resamples; the p-value is two-sided, from the share
    of resampled differences on the other side of 0 (doubled, at most 1).

    Returns:
        dict with ``cindex_a``, ``cindex_b``, ``difference`` (a - b), ``lower``, ``upper``
        (95% interval of the difference) and ``p_value``.
    """
    time, event = check_time_event(time, event, what="test split")
    check_test_split(time, event)
    w = _bootstrap_weights(len(time), n_boot, seed)
    stats = []
    for risk in (risk_a, risk_b):
        comparable, score = _pairs(time, event, np.asarray(risk, dtype=float))
        stats.append((score.sum() / comparable.sum(), _weighted_cindex(w, comparable, score)))
    (ca, boot_a), (cb, boot_b) = stats
    diff = boot_a - boot_b
    diff = diff[np.isfinite(diff)]
    p = min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()))
    lower, upper = np.quantile(diff, [0.025, 0.975])
    return {
        "cindex_a": float(ca),
        "cindex_b": float(cb),
        "difference": float(ca - cb),
        "lower": float(lower),
        "upper": float(upper),
        "p_value": float(p),
        "n_boot": int(n_boot),
    }


def _surv(time, event):
    return Surv.from_arrays(np.asarray(event, dtype=bool), np.asarray(time, dtype=float))


def eval_times(train_time, train_event, test_time, test_event, num: int = 10) -> np.ndarray:
    """Evaluation grid for AUC and Brier: test event-time quantiles (10th-80th percentile)
    inside the range where the training censoring distribution is estimable."""
    lo = np.quantile(test_time[test_event], 0.1) if test_event.any() else test_time.min()
    hi = min(np.quantile(test_time[test_event], 0.8) if test_event.any() else test_time.max(), train_time.max())
    hi = min(hi, test_time.max())
    grid = np.unique(np.linspace(lo, hi, num))
    # sksurv requires times strictly inside the test follow-up range.
    return grid[(grid >= test_time.min()) & (grid < test_time.max())]


def uno_cindex(train_time, train_event, test_time, test_event, risk, tau: float | None = None) -> float:
    """Uno's IPCW c-index, truncated at ``tau`` (default: the 80th percentile of training times).

    Test times beyond the largest training time are truncated to it (the censoring
    distribution is not estimable there).
    """
    train_time, train_event = check_time_event(train_time, train_event, what="training split")
    test_time, test_event = check_time_event(test_time, test_event, what="test split")
    if tau is None:
        tau = float(np.quantile(train_time, 0.8))
    test_time = np.minimum(test_time, train_time.max() - 1e-9 * train_time.max())
    return float(concordance_index_ipcw(_surv(train_time, train_event), _surv(test_time, test_event), np.asarray(risk, float), tau=tau)[0])


def td_auc(train_time, train_event, test_time, test_event, risk, times) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at ``times`` and its mean (scikit-survival).

    ``risk`` is shape (n,) or (n, len(times)) (e.g. 1 - S(t)).
    """
    auc, mean_auc = cumulative_dynamic_auc(
        _surv(train_time, train_event), _surv(test_time, test_event), np.asarray(risk, float), times
    )
    return auc, float(mean_auc)


def integrated_brier(train_time, train_event, test_time, test_event, survival, times) -> float:
    """Integrated Brier score of survival curves ``survival`` (n, len(times)) over ``times``."""
    return float(
        integrated_brier_score(_surv(train_time, train_event), _surv(test_time, test_event), np.asarray(survival, float), times)
    )


def evaluate(
    train_time, train_event, test_time, test_event, risk, survival_fn=None, n_boot: int = 1000, seed: int = 0
) -> dict:
    """All test metrics of one model.

    Args:
        train_time, train_event: training follow-up (censoring distribution, time grid).
        test_time, test_event: test follow-up.
        risk: test risk, shape (n,).
        survival_fn: optional ``times -> (n, len(times))`` survival curves of the test
            patients; enables time-dependent AUC on them and the integrated Brier score.
        n_boot, seed: bootstrap of Harrell's interval.

    Returns:
        JSON-ready dict: ``harrell`` (cindex, lower, upper, n, events), ``uno``,
        ``auc_times``, ``auc``, ``mean_auc``, ``ibs`` (null without curves).
    """
    train_time, train_event = check_time_event(train_time, train_event, what="training split")
    test_time, test_event = check_time_event(test_time, test_event, what="test split")
    out = {"harrell": harrell_cindex(test_time, test_event, risk, n_boot=n_boot, seed=seed).as_dict()}
    out["uno"] = uno_cindex(train_time, train_event, test_time, test_event, risk)
    times = eval_times(train_time, train_event, test_time, test_event)
    out.update(auc_times=times.tolist(), auc=None, mean_auc=None, ibs=None)
    if len(times) >= 2:
        if survival_fn is not None:
            surv = survival_fn(times)
            auc, mean_auc = td_auc(train_time, train_event, test_time, test_event, 1 - surv, times)
            out["ibs"] = integrated_brier(train_time, train_event, test_time, test_event, surv, times)
        else:
            auc, mean_auc = td_auc(train_time, train_event, test_time, test_event, risk, times)
        out.update(auc=np.asarray(auc).tolist(), mean_auc=mean_auc)
    return out
