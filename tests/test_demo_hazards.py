"""Demo follow-up at the default sizes (planning only, no volumes): censoring, c-indices."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from ctsurv.demo.cohort import plan_lung, plan_pe
from ctsurv.demo.hazards import sample_follow_up


@pytest.fixture(scope="module")
def lung():
    return plan_lung(200, 7)


@pytest.fixture(scope="module")
def pe():
    return plan_pe(200, 7)


def _c(plans, field):
    event = np.array([p.truth["event"] for p in plans], bool)
    time = np.array([p.truth["time"] for p in plans])
    return concordance_index_censored(event, time, np.array([p.truth[field] for p in plans]))[0]


def test_censoring_fractions_hit_their_targets(lung, pe):
    lung_censored = 1 - np.mean([p.truth["event"] for p in lung])
    pe_censored = 1 - np.mean([p.truth["event"] for p in pe])
    assert 0.20 <= lung_censored <= 0.25
    assert 0.78 <= pe_censored <= 0.82


def test_lung_risk_is_mostly_clinical_and_pe_risk_mostly_imaging(lung, pe):
    assert _c(lung, "log_hazard") > 0.72
    assert _c(lung, "log_hazard_clinical") > _c(lung, "log_hazard_image_only") > 0.52
    assert _c(pe, "log_hazard") > 0.72
    assert _c(lung, "log_hazard_clinical") > _c(lung, "log_hazard_findings")
    assert _c(pe, "log_hazard") > 0.78
    assert _c(pe, "log_hazard_findings") > _c(pe, "log_hazard_clinical") + 0.1
    assert _c(pe, "log_hazard_image_only") > 0.55
    assert _c(pe, "log_hazard_clinical") < 0.72  # vitals and age: weakly predictive
    # the parts add up to the whole
    for p in lung[:5] + pe[:5]:
        t = p.truth
        assert t["log_hazard"] == pytest.approx(t["log_hazard_clinical"] + t["log_hazard_findings"] + t["log_hazard_image_only"])


def test_follow_up_sampler_is_exact_and_higher_hazard_dies_sooner():
    rng = np.random.default_rng(0)
    lh = np.r_[np.zeros(500), np.full(500, 1.5)]
    time, event, window = sample_follow_up(rng, lh, censored_fraction=0.3, median_days=300.0)
    assert abs((1 - event.mean()) - 0.3) <= 0.002
    assert (time > 0).all() and window > 0
    assert np.median(time[500:]) < np.median(time[:500])
