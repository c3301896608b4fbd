"""Time discretization for DeepHit: cuts from the training data, bin index per patient.

K cuts ``c_0 = 0 < c_1 < ... < c_{K-1} = max training time`` give K bins plus one for
"beyond the last cut" (the head's last column).  An event at time t falls in the first bin
whose cut is >= t (c_{k-1} < t <= c_k); a censored time falls in the last bin whose cut is
<= t (c_k <= t < c_{k+1}), so its "mass after the bin" only counts times it did not survive
past; an event after the last cut is censored at the last cut.  These are pycox's rules, so
results compare with pycox's ``LabTransDiscreteTime``.
"""

from __future__ import annotations

import warnings

import numpy as np

from .validation import check_time_event, check_training_events

SCHEMES = ("quantile", "equidistant")


def make_cuts(time, event, num: int, scheme: str = "quantile") -> np.ndarray:
    """Cut points from training data.

    Args:
        time, event: training follow-up, shape (n,).
        num: number of cuts K (>= 2).
        scheme: "quantile" (equal steps of the Kaplan-Meier survival curve, so each bin holds
            about the same share of events, censoring accounted for) or "equidistant"
            (``linspace(0, max time, num)``).

    Returns:
        Strictly increasing cuts, shape (K',), K' <= num (duplicate quantiles are merged,
        with a warning), first cut 0, last cut the maximum training time.
    """
    time, event = check_time_event(time, event, what="cut points")
    check_training_events(event, what="cut points")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    if scheme == "equidistant":
        return np.linspace(0.0, time.max(), num)
    if scheme != "quantile":
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    from sksurv.nonparametric import kaplan_meier_estimator

    km_time, km_surv = kaplan_meier_estimator(event, time)
    # Survival levels evenly spaced between the curve's ends; the time where S first drops
    # to that level (or below) is a cut.
    levels = np.linspace(km_surv.min(), 1.0, num)
    grid = np.concatenate([[0.0], km_time, [time.max()]])
    surv = np.concatenate([[1.0], km_surv, [km_surv.min()]])
    pos = np.array([np.flatnonzero(surv <= level + 1e-12)[0] for level in levels])
    cuts = grid[pos]
    cuts[0], cuts[-1] = 0.0, time.max()  # the last level is reached at the last event; extend to all follow-up
    cuts = np.unique(cuts)
    if len(cuts) != num:
        warnings.warn(f"quantile cuts are not unique; continuing with {len(cuts)} cuts instead of {num}", stacklevel=2)
    return cuts


def discretize(time, event, cuts) -> tuple[np.ndarray, np.ndarray]:
    """Bin index and (possibly censored) event flag per patient.

    Args:
        time, event: shape (n,).
        cuts: shape (K,), from :func:`make_cuts`.

    Returns:
        (idx int64 (n,) in [0, K-1], event float32 (n,)); events after the last cut become
        censored at the last cut.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool).copy()
    cuts = np.asarray(cuts, dtype=float)
    beyond = time > cuts[-1]
    event[beyond] = False
    time = np.minimum(time, cuts[-1])
    idx_event = np.searchsorted(cuts, time, side="left")  # first cut >= t
    idx_censored = np.searchsorted(cuts, time, side="right") - 1  # last cut <= t
    idx = np.where(event, idx_event, np.maximum(idx_censored, 0))
    return idx.astype(np.int64), event.astype(np.float32)
