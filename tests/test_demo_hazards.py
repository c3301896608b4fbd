"""Demo follow-up at the configured sizes (planning only, no volumes): censoring, events in
the test splits, and the character of each cohort's risk (c-indices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sksurv.metrics import concordance_index_censored

from ctsurv.data.splits import assign_splits
from ctsurv.demo.cohort import CLINICAL_COLUMNS, plan_lung, plan_pe
from ctsurv.demo.generate import manifest_frame
from ctsurv.demo.hazards import sample_follow_up
from ctsurv.survival.models import build_model
from ctsurv.survival.tabular import TabularEncoder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lung(config):
    return plan_lung(config["demo"]["n_lung"], config["demo"]["seed"])


@pytest.fixture(scope="module")
def pe(config):
    return plan_pe(config["demo"]["n_pe"], config["demo"]["seed"])


def _c(plans, field):
    event = np.array([p.truth["event"] for p in plans], bool)
    time = np.array([p.truth["time"] for p in plans])
    return concordance_index_censored(event, time, np.array([p.truth[field] for p in plans]))[0]


def _with_splits(plans, kind, config) -> pd.DataFrame:
    frame = manifest_frame(plans, kind)
    s = config["splits"]
    frame["split"] = assign_splits(frame["patient_id"], frame["event"], seed=s["seed"], ratios=(s["train"], s["val"], s["test"])).to_numpy()
    frame["log_hazard"] = [p.truth["log_hazard"] for p in plans]
    return frame


def _test_cindices(frame: pd.DataFrame, kind: str) -> tuple[float, float]:
    """(oracle c-index, clinical CoxPH c-index) on the test split, CoxPH fitted on train as the baseline is."""
    train, test = (frame["split"] == "train").to_numpy(), (frame["split"] == "test").to_numpy()
    encoder = TabularEncoder(CLINICAL_COLUMNS[kind]).fit(frame[train])
    x = encoder.transform(frame)
    time, event = frame["time"].to_numpy(float), frame["event"].to_numpy(int).astype(bool)
    cox = build_model("coxph")
    cox.fit(x[train], time[train], event[train])
    risk = cox.predict_risk(x)
    oracle = concordance_index_censored(event[test], time[test], frame["log_hazard"].to_numpy()[test])[0]
    return oracle, concordance_index_censored(event[test], time[test], risk[test])[0]


def test_censoring_fractions_hit_their_targets(lung, pe):
    lung_censored = 1 - np.mean([p.truth["event"] for p in lung])
    pe_censored = 1 - np.mean([p.truth["event"] for p in pe])
    assert 0.22 <= lung_censored <= 0.23
    assert 0.645 <= pe_censored <= 0.655


def test_sizes_put_enough_events_in_every_test_split(config, lung, pe):
    demo = config["demo"]
    assert demo["n_pe"] >= 1000 and demo["n_lung"] >= 500
    for plans, kind in ((lung, "lung"), (pe, "pe")):
        frame = _with_splits(plans, kind, config)
        events = frame.groupby("split")["event"].sum()
        assert events["test"] >= 40, (kind, events.to_dict())
        assert events["val"] >= 10, (kind, events.to_dict())


def test_clinical_coxph_nears_the_oracle_on_lung_but_not_on_pe(config, lung, pe):
    oracle, coxph = _test_cindices(_with_splits(lung, "lung", config), "lung")
    assert oracle > 0.75 and oracle - coxph <= 0.05, (oracle, coxph)
    oracle, coxph = _test_cindices(_with_splits(pe, "pe", config), "pe")
    assert oracle > 0.78 and oracle - coxph >= 0.1, (oracle, coxph)


def test_lung_risk_is_mostly_clinical_and_pe_risk_mostly_imaging(lung, pe):
    assert _c(lung, "log_hazard") > 0.74
    assert _c(lung, "log_hazard_clinical") > _c(lung, "log_hazard_image_only") > 0.55
    assert _c(lung, "log_hazard_clinical") > _c(lung, "log_hazard_findings")
    assert _c(pe, "log_hazard") > 0.78
    assert _c(pe, "log_hazard_findings") > _c(pe, "log_hazard_clinical") + 0.08
    assert _c(pe, "log_hazard_image_only") > 0.62
    assert _c(pe, "log_hazard_clinical") < 0.7  # vitals and age: weakly predictive
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
