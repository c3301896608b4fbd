"""The signal ladder: rungs from the known hazard to our model, the penalised Cox on the features,
where the signal is lost, and the cohort without a truth table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.features import write_features
from ctsurv.report.ladder import ladder_figure, signal_ladder
from ctsurv.survival.coxnet import Coxnet, cindex


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    """400 patients: an age effect (clinical) and a finding read by 3 of 40 image features."""
    tmp = tmp_path_factory.mktemp("ladder")
    rng = np.random.default_rng(7)
    n = 400
    age = rng.normal(60, 10, n)
    finding = rng.normal(size=n)
    clin_part, find_part, image_part = 0.08 * (age - 60), 1.2 * finding, 0.5 * rng.normal(size=n)
    log_hz = clin_part + find_part + image_part
    t_event = rng.exponential(np.exp(-log_hz)) * 100
    t_cens = rng.uniform(30, 300, n)
    study = [f"s{i:03d}" for i in range(n)]
    split = np.array(["train"] * 240 + ["val"] * 80 + ["test"] * 80)
    cohort = pd.DataFrame({"study_id": study, "patient_id": study, "split": split, "age": age,
                           "time": np.minimum(t_event, t_cens), "event": (t_event <= t_cens).astype(int)})
    truth = pd.DataFrame({"study_id": study, "log_hazard": log_hz, "log_hazard_clinical": clin_part,
                          "log_hazard_findings": find_part, "log_hazard_image_only": image_part,
                          "time": t_event, "event": 1})  # the demo's truth also holds follow-up columns
    truth.to_parquet(tmp / "truth.parquet")
    pooled = rng.normal(size=(n, 40))
    pooled[:, :3] += finding[:, None]  # three noisy copies of the finding
    write_features(tmp / "image", study, {"pooled": pooled.astype(np.float32)})
    preds = {"baselines/coxph_clinical": clin_part + rng.normal(scale=0.01, size=n),
             "baselines/deepsurv_image": find_part + rng.normal(scale=2.0, size=n),
             "stage2/deepsurv_with": log_hz + rng.normal(scale=1.5, size=n),
             "stage2/deepsurv_without": rng.normal(size=n)}
    paths = {}
    for name, risk in preds.items():
        (tmp / name).mkdir(parents=True)
        paths[name] = tmp / name / "predictions.parquet"
        cohort[["study_id", "split", "time", "event"]].assign(risk=risk).to_parquet(paths[name])
    return tmp, cohort, paths


def test_ladder_rungs_intervals_correlations_and_where_lost(cohort_files, tmp_path):
    tmp, cohort, paths = cohort_files
    table, md = signal_ladder(cohort, tmp / "image", [paths["baselines/coxph_clinical"], paths["baselines/deepsurv_image"]],
                              [paths["stage2/deepsurv_with"], paths["stage2/deepsurv_without"]], "tiny",
                              clinical=["age"], truth_path=tmp / "truth.parquet", n_boot=100)
    assert table["group"].tolist() == ["truth"] * 4 + ["clinical"] + ["features"] * 2 + ["baselines"] + ["ours"] * 2
    by = table.set_index("rung")
    oracle = by.loc["oracle (known hazard)"]
    assert oracle["c_index"] > by.loc["true clinical part alone", "c_index"]
    assert (table["ci_low"] < table["c_index"]).all() and (table["c_index"] < table["ci_high"]).all()
    assert (table["n_test"] == 80).all()
    # the penalised Cox finds the finding in the features: near the findings part alone, above the noisy network
    coxnet = by.loc["penalised Cox, image features"]
    assert coxnet["c_index"] > by.loc["DeepSurv, image", "c_index"] + 0.05
    assert coxnet["chosen"]["val_cindex"] == pytest.approx(coxnet["val_c_index"], abs=1e-3)
    # correlations with the true parts: the CoxPH carries the clinical part, the image baseline the findings
    assert by.loc["CoxPH, clinical", "corr_clinical"] > 0.95 and abs(by.loc["CoxPH, clinical", "corr_findings"]) < 0.2
    assert by.loc["DeepSurv, image", "corr_findings"] > 0.3
    assert "## Signal ladder: tiny" in md and "The signal is lost mostly between" in md
    assert "Clinical part of the true hazard carried (Spearman, test): CoxPH, clinical 1.00" in md
    ladder_figure(table, tmp_path / "ladder.png", "tiny")
    assert (tmp_path / "ladder.png").stat().st_size > 5000


def test_ladder_without_truth_has_no_truth_rungs(cohort_files):
    tmp, cohort, paths = cohort_files
    table, md = signal_ladder(cohort, tmp / "image", [paths["baselines/coxph_clinical"]], [paths["stage2/deepsurv_with"]],
                              "real", clinical=["age"], truth_path=None, n_boot=50)
    assert "truth" not in set(table["group"]) and not any(c.startswith("corr_") for c in table.columns)
    assert "oracle" not in md and "The signal is lost" in md


def test_coxnet_chooses_dimension_and_penalty_on_validation():
    rng = np.random.default_rng(0)
    n, d = 300, 60
    x = rng.normal(size=(n, d))
    log_hz = x[:, 0] - x[:, 1]
    time = rng.exponential(np.exp(-log_hz))
    event = rng.random(n) < 0.8
    train, val, test = np.arange(180), np.arange(180, 240), np.arange(240, 300)
    model = Coxnet(dims=(2, None)).fit(x, time, event, train, val)
    assert model.chosen["dims"] in (2, None) and model.chosen["val_cindex"] > 0.7
    assert cindex(time[test], event[test], model.predict_risk(x[test])) > 0.7
    from ctsurv.errors import DataError

    with pytest.raises(DataError, match="validation split needs events"):
        Coxnet().fit(x, time, np.where(np.isin(np.arange(n), val), False, event), train, val)
