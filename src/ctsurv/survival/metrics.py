"""Discrimination and calibration metrics on a test split.

Point estimates come from scikit-survival.  Bootstrap intervals and the paired model
comparison weight each patient by how often a resample drew them (multinomial counts), and
count the weighted comparable and concordant pairs (Harrell's definition, as scikit-survival
counts it) in O(n log n) per resample, without n x n matrices: the dense pair matrices this
replaced took 3 GB each for 20,000 test patients.  See :func:`concordance_sums`.
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
# Bootstrap resamples are processed in chunks of about this many (resample, patient) cells,
# so the working arrays stay near 8 * 2**21 bytes = 16 MiB each whatever n and n_boot are.
_CHUNK_CELLS = 2**21


class _PairCounter:
    """Counts weighted comparable and concordant pairs of one (time, event, risk) split.

    Everything that does not depend on the weights (sort orders, partner thresholds, the
    per-level bucket orders and query bounds) is computed once here, so the bootstrap only
    gathers and cumulates weights.  See :func:`concordance_sums` for the method.
    """

    def __init__(self, time, event, risk):
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=bool)
        risk = np.asarray(risk, dtype=float)
        n = self.n = len(time)
        self.order = np.lexsort((~event, time))  # by time; events first among equal times
        t, e, r = time[self.order], event[self.order], risk[self.order]
        self.events = np.flatnonzero(e)
        before = np.searchsorted(t, t[self.events], side="left")
        events_cum = np.concatenate(([0], np.cumsum(e)))
        tied_end = np.searchsorted(t, t[self.events], side="right")
        self.first_partner = before + (events_cum[tied_end] - events_cum[before])

        by_risk = np.argsort(r, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[by_risk] = np.arange(n)
        sorted_risk = r[by_risk]
        below = np.searchsorted(sorted_risk, r[self.events] - TIED_TOL, side="left")  # risk_j < r_i - tol
        upto = np.searchsorted(sorted_risk, r[self.events] + TIED_TOL, side="right")  # risk_j <= r_i + tol
        # Each event asks twice: partners below r_i - tol, and up to r_i + tol (ties count half).
        k = np.concatenate((below, upto))
        g = np.concatenate((self.first_partner, self.first_partner))
        asker = np.concatenate((np.arange(len(self.events)),) * 2)
        self.levels = []
        for level in range(max(1, int(n).bit_length())):
            items = np.flatnonzero(((rank >> level) & 1) == 0)
            items = items[np.argsort(rank[items] >> (level + 1), kind="stable")]
            keys = (rank[items] >> (level + 1)) * (n + 1) + items
            q = np.flatnonzero((k >> level) & 1)
            bucket = k[q] >> (level + 1)
            start = np.searchsorted(keys, bucket * (n + 1) + g[q], side="left")
            end = np.searchsorted(keys, (bucket + 1) * (n + 1), side="left")
            if len(q):
                self.levels.append((items, asker[q], start, end))

    def sums(self, weights) -> tuple[np.ndarray, np.ndarray]:
        """(concordant, comparable), shape (B,), for (B, n) weights."""
        # (n, B) layout: the gathers below copy contiguous rows of B weights.
        w = np.ascontiguousarray(np.asarray(weights, dtype=float)[:, self.order].T)
        n, rows = w.shape
        w_ev = w[self.events]
        cum = np.zeros((n + 1, rows))
        np.cumsum(w[::-1], axis=0, out=cum[1:])
        suffix = cum[::-1]  # suffix[p] = sum of w over positions >= p
        comparable = np.einsum("qb,qb->b", w_ev, suffix[self.first_partner])
        concordant = np.zeros(rows)
        for items, asker, start, end in self.levels:
            cum[0] = 0.0
            np.cumsum(w[items], axis=0, out=cum[1 : len(items) + 1])
            concordant += 0.5 * np.einsum("qb,qb->b", w_ev[asker], cum[end] - cum[start])
        return concordant, comparable


def concordance_sums(time, event, risk, weights) -> tuple[np.ndarray, np.ndarray]:
    """Weighted concordant and comparable pair counts, one per row of ``weights``.

    Pair (i, j) is comparable when i had an event and t_i < t_j, or t_i = t_j and j is
    censored (scikit-survival's rule); it scores 1 when risk_i - risk_j > ``TIED_TOL``, 0.5
    when the risks are within ``TIED_TOL``, else 0.  A pair counts ``w_i * w_j`` times.

    How, in O(L * B * n) for L = log2(n) levels and B rows of weights: sort the patients by
    time (events before censored at equal times), so that the partners j of event i are
    exactly the positions from g_i on.  Then both counts are sums of w_j over
    {j : position >= g_i, risk rank < k} (k from the risk sort: below r_i - tol, and up to
    r_i + tol).  Such a 2D dominance sum splits by the highest bit where rank_j and k differ:
    at level l it is a suffix sum over positions inside the bucket ``rank >> (l + 1)``,
    read off one cumulative sum over the patients ordered by (bucket, position).

    Args:
        time, event, risk: shape (n,).
        weights: (B, n) non-negative counts (a bootstrap resample per row; ones for the
            plain c-index).

    Returns:
        ``(concordant, comparable)``, each shape (B,); their ratio is the c-index.
        Exact for integer weights (all sums are integers or halves below 2**53).
    """
    return _PairCounter(time, event, risk).sums(weights)


def _bootstrap_weight_chunks(n: int, n_boot: int, seed: int):
    """Resample counts per patient, (rows, n) chunks of the (n_boot, n) matrix in order.

    Drawn from one generator in sequence, so the chunks are the rows that one
    ``multinomial(n, 1/n, size=n_boot)`` call gives: results do not depend on the chunk size.
    """
    rng = np.random.default_rng(seed)
    p = np.full(n, 1.0 / n)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, rows):
        yield rng.multinomial(n, p, size=min(rows, n_boot - start)).astype(float)


def _bootstrap_cindices(time, event, risks, n_boot: int, seed: int) -> list[np.ndarray]:
    """Per-resample c-index (nan when a resample has no comparable pair) for each risk."""
    counters = [_PairCounter(time, event, risk) for risk in risks]
    out = [[] for _ in risks]
    for w in _bootstrap_weight_chunks(len(time), n_boot, seed):
        for acc, counter in zip(out, counters):
            num, den = counter.sums(w)
            with np.errstate(invalid="ignore", divide="ignore"):
                acc.append(num / den)
    return [np.concatenate(a) if a else np.empty(0) for a in out]


def bootstrap_cindex(time, event, risk, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Harrell's c-index on ``n_boot`` bootstrap resamples of the patients, shape (n_boot,)."""
    time, event = check_time_event(time, event, what="test split")
    return _bootstrap_cindices(time, event, [np.asarray(risk, dtype=float)], n_boot, seed)[0]


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
        boots = _bootstrap_cindices(time, event, [risk], n_boot, seed)[0]
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
    risks = [np.asarray(risk_a, dtype=float), np.asarray(risk_b, dtype=float)]
    ones = np.ones((1, len(time)))
    ca, cb = (float(num[0] / den[0]) for num, den in (concordance_sums(time, event, r, ones) for r in risks))
    boot_a, boot_b = _bootstrap_cindices(time, event, risks, n_boot, seed)
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
