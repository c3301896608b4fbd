"""Metrics against scikit-survival; discretization against pycox; input validation errors."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc
from sksurv.util import Surv

from ctsurv.errors import DataError
from ctsurv.survival.discretize import discretize, make_cuts
from ctsurv.survival.metrics import compare_cindex, concordance_sums, evaluate, harrell_cindex, uno_cindex
from ctsurv.survival.validation import check_features, check_test_split, check_time_event, check_training_events


def _data(n=120, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t = rng.exponential(np.exp(-risk)) * 10 + 0.1
    if ties:
        t = np.ceil(t)
    e = rng.random(n) < 0.7
    return t, e, risk + rng.normal(scale=0.8, size=n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_counts_reproduce_sksurv_harrell_with_ties(seed):
    t, e, r = _data(seed=seed)
    r = np.round(r, 1)  # tied risks too
    concordant, comparable = concordance_sums(t, e, r, np.ones((1, len(t))))
    assert concordant[0] / comparable[0] == pytest.approx(concordance_index_censored(e, t, r)[0], abs=1e-12)


def test_harrell_interval_brackets_estimate_and_shrinks_with_n():
    t, e, r = _data(n=80)
    small = harrell_cindex(t, e, r, n_boot=300)
    assert small.cindex == pytest.approx(concordance_index_censored(e, t, r)[0])
    assert small.lower < small.cindex < small.upper
    t, e, r = _data(n=600)
    big = harrell_cindex(t, e, r, n_boot=300)
    assert big.upper - big.lower < small.upper - small.lower
    assert big.events == int(e.sum()) and big.n == 600


def test_paired_bootstrap_identical_and_clearly_different_models():
    t, e, r = _data(n=200)
    same = compare_cindex(t, e, r, r, n_boot=200)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    noise = np.random.default_rng(5).normal(size=len(t))
    diff = compare_cindex(t, e, r, noise, n_boot=500)
    assert diff["cindex_a"] == pytest.approx(concordance_index_censored(e, t, r)[0])
    assert diff["difference"] > 0.1 and diff["p_value"] < 0.01 and diff["lower"] > 0


def test_uno_and_auc_match_sksurv():
    t, e, r = _data(n=300, ties=False)
    tr, te = slice(0, 200), slice(200, 300)
    tau = float(np.quantile(t[tr], 0.8))
    y_tr, y_te = Surv.from_arrays(e[tr], t[tr]), Surv.from_arrays(e[te], np.minimum(t[te], t[tr].max() * (1 - 1e-9)))
    ref = concordance_index_ipcw(y_tr, y_te, r[te], tau=tau)[0]
    assert uno_cindex(t[tr], e[tr], t[te], e[te], r[te]) == pytest.approx(ref)
    out = evaluate(t[tr], e[tr], t[te], e[te], r[te], n_boot=50)
    times = np.array(out["auc_times"])
    ref_auc, ref_mean = cumulative_dynamic_auc(y_tr, Surv.from_arrays(e[te], t[te]), r[te], times)
    assert out["mean_auc"] == pytest.approx(ref_mean) and np.allclose(out["auc"], ref_auc)
    assert out["ibs"] is None


def test_evaluate_brier_with_survival_curves():
    from sksurv.metrics import integrated_brier_score

    t, e, r = _data(n=300, ties=False)
    tr, te = slice(0, 200), slice(200, 300)

    def curves(times):  # exponential model with the risk as log-hazard
        return np.exp(-np.outer(np.exp(r[te]), times) / 10)

    out = evaluate(t[tr], e[tr], t[te], e[te], r[te], survival_fn=curves, n_boot=50)
    times = np.array(out["auc_times"])
    ref = integrated_brier_score(Surv.from_arrays(e[tr], t[tr]), Surv.from_arrays(e[te], t[te]), curves(times), times)
    assert out["ibs"] == pytest.approx(ref)
    assert 0 < out["ibs"] < 0.25


def test_equidistant_cuts_and_index_rules_match_pycox():
    from pycox.preprocessing.label_transforms import LabTransDiscreteTime

    t, e, _ = _data(n=200)
    cuts = make_cuts(t, e, 10, "equidistant")
    lab = LabTransDiscreteTime(10, scheme="equidistant")
    idx_ref, ev_ref = lab.fit_transform(t, e.astype(float))
    assert np.allclose(cuts, lab.cuts)
    idx, ev = discretize(t, e, cuts)
    assert np.array_equal(idx, idx_ref) and np.array_equal(ev, ev_ref)


def test_discretize_hand_cases():
    cuts = np.array([0.0, 2.0, 4.0])
    idx, ev = discretize([1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 5.0], [1, 1, 1, 0, 0, 0, 1], cuts)
    # events go up to the next cut; censored down to the previous; beyond the last cut -> censored there
    assert idx.tolist() == [1, 1, 2, 0, 1, 1, 2]
    assert ev.tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_quantile_cuts_split_events_evenly():
    rng = np.random.default_rng(0)
    t = rng.exponential(size=2000) + 1e-3
    e = np.ones(2000, bool)
    cuts = make_cuts(t, e, 5, "quantile")
    assert cuts[0] == 0 and cuts[-1] == t.max() and np.all(np.diff(cuts) > 0)
    counts = np.histogram(t, bins=cuts)[0]
    assert np.allclose(counts / 2000, 0.25, atol=0.01)


def test_validation_errors_name_columns_and_rows():
    with pytest.raises(DataError, match=r"column 'days'.*rows 3"):
        check_time_event([1.0, 0.0, 2.0], [1, 0, 1], time_col="days")
    with pytest.raises(DataError, match=r"non-finite times at rows 2"):
        check_time_event([np.nan, 1.0], [1, 0])
    with pytest.raises(DataError, match=r"column 'dead'.*0 \(censored\) or 1.*2 at rows 4"):
        check_time_event([1.0, 2.0, 3.0], [1, 0, 2], event_col="dead")
    with pytest.raises(DataError, match=r"column 'age': non-finite values at rows 3"):
        check_features(np.array([[1.0, 2.0], [1.0, np.inf]]), columns=["sex", "age"])
    with pytest.raises(DataError, match="no events"):
        check_training_events(np.zeros(10))
    with pytest.raises(DataError, match="at least 5"):
        check_test_split([1.0, 2.0, 3.0], [1, 0, 1])
    with pytest.raises(DataError, match="no events"):
        check_test_split(np.arange(1.0, 10.0), np.zeros(9))
    with pytest.raises(DataError, match="too small|at least"):
        harrell_cindex([1.0, 2.0], [1, 1], [0.1, 0.2])
