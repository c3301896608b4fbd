"""The bootstrap c-index without n x n matrices (issue 12, item 12): the same numbers as the
dense pair-matrix implementation it replaced, scikit-survival's Harrell c-index, and memory
that grows with n, not n squared."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from ctsurv.survival.metrics import TIED_TOL, compare_cindex, harrell_cindex


# -- the replaced implementation (ctsurv 0282576, survival/metrics.py:26-52), as the reference --

def dense_pairs(time, event, risk):
    t, e = time[:, None], event[:, None]
    comparable = e & ((t < time[None, :]) | ((t == time[None, :]) & ~event[None, :]))
    diff = risk[:, None] - risk[None, :]
    score = np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float))
    return comparable.astype(float), comparable * score


def dense_bootstrap_weights(n, n_boot, seed):
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def dense_weighted_cindex(weights, comparable, score):
    num = ((weights @ score) * weights).sum(axis=1)
    den = ((weights @ comparable) * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def dense_harrell_interval(time, event, risk, n_boot, seed, level=0.95):
    comparable, score = dense_pairs(time, event, risk)
    boots = dense_weighted_cindex(dense_bootstrap_weights(len(time), n_boot, seed), comparable, score)
    boots = boots[np.isfinite(boots)]
    return np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])


def dense_compare(time, event, risk_a, risk_b, n_boot, seed):
    w = dense_bootstrap_weights(len(time), n_boot, seed)
    out = []
    for risk in (risk_a, risk_b):
        comparable, score = dense_pairs(time, event, risk)
        out.append((score.sum() / comparable.sum(), dense_weighted_cindex(w, comparable, score)))
    diff = out[0][1] - out[1][1]
    diff = diff[np.isfinite(diff)]
    p = min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()))
    return out[0][0], out[1][0], np.quantile(diff, [0.025, 0.975]), p


def data(n, seed, time_ties=True, risk_ties=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x)) * 10 + 0.1
    if time_ties:
        t = np.ceil(t)
    e = rng.random(n) < 0.6
    e[0] = True
    r = x + rng.normal(scale=0.8, size=n)
    if risk_ties:
        r = np.round(r, 1)
    return t, e, r


@pytest.mark.parametrize("n, seed, time_ties, risk_ties", [
    (7, 0, True, True), (30, 1, True, True), (120, 2, True, False), (120, 3, False, True),
    (257, 4, False, False), (64, 5, True, True),
])
def test_same_interval_as_the_dense_implementation(n, seed, time_ties, risk_ties):
    t, e, r = data(n, seed, time_ties, risk_ties)
    got = harrell_cindex(t, e, r, n_boot=200, seed=seed)
    lower, upper = dense_harrell_interval(t, e, r, 200, seed)
    assert (got.lower, got.upper) == pytest.approx((lower, upper), abs=1e-12)
    assert got.cindex == pytest.approx(concordance_index_censored(e, t, r, tied_tol=TIED_TOL)[0], abs=1e-12)


def test_bootstrap_resamples_match_the_dense_numbers_one_by_one():
    from ctsurv.survival.metrics import bootstrap_cindex

    t, e, r = data(90, 7, True, True)
    got = bootstrap_cindex(t, e, r, n_boot=50, seed=3)
    comparable, score = dense_pairs(t, e, r)
    want = dense_weighted_cindex(dense_bootstrap_weights(90, 50, 3), comparable, score)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_every_pair_kind_counts_as_in_scikit_survival():
    # time ties between events (not comparable), event tied with a censored time (comparable),
    # risk ties (one half), and risks closer than the tie tolerance.
    t = np.array([1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    e = np.array([True, True, False, True, True, False, False, True])
    r = np.array([0.5, 0.5, 0.2, 0.9, 0.3, 0.3 + 1e-9, 0.1, 0.4])
    got = harrell_cindex(t, e, r, n_boot=0).cindex
    comparable, score = dense_pairs(t, e, r)
    assert got == pytest.approx(concordance_index_censored(e, t, r, tied_tol=TIED_TOL)[0], abs=1e-12)
    assert got == pytest.approx(score.sum() / comparable.sum(), abs=1e-12)
    from ctsurv.survival.metrics import concordance_sums

    num, den = concordance_sums(t, e, r, np.ones((1, len(t))))
    assert (num[0], den[0]) == (score.sum(), comparable.sum())


def test_paired_comparison_is_unchanged():
    t, e, r = data(150, 8, True, False)
    other = r + np.random.default_rng(9).normal(scale=1.0, size=len(r))
    got = compare_cindex(t, e, r, other, n_boot=150, seed=2)
    ca, cb, (lo, hi), p = dense_compare(t, e, r, other, 150, 2)
    assert (got["cindex_a"], got["cindex_b"]) == pytest.approx((ca, cb), abs=1e-12)
    assert (got["lower"], got["upper"], got["p_value"]) == pytest.approx((lo, hi, p), abs=1e-12)


def test_memory_grows_with_n_not_n_squared():
    """4,000 test patients: the dense version held several 4,000 x 4,000 float64 arrays (128 MB each)."""
    t, e, r = data(4000, 10, True, False)
    tracemalloc.start()
    try:
        harrell_cindex(t, e, r, n_boot=40, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.0f} MiB"
