"""Baselines on a synthetic cohort with synthetic feature stores: train, evaluate, tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.errors import ConfigError, DataError
from ctsurv.features import write_features
from ctsurv.report.tables import dataset_results, oracle_line, report_markdown
from ctsurv.survival.baselines import evaluate_baseline as evaluate_written
from ctsurv.survival.baselines import train_baseline
from ctsurv.survival.evaluation import evaluate_predictions as evaluate_baseline
from ctsurv.survival.fit import TrainConfig
from ctsurv.survival.models import ModelSettings

SETTINGS = ModelSettings(train=TrainConfig(lr=1e-2, batch_size=32, max_epochs=40, patience=5), num_durations=8)


@pytest.fixture
def cohort_and_stores(tmp_path):
    """200 patients; the image store carries the hazard, the text store is noise."""
    rng = np.random.default_rng(0)
    n = 200
    img = rng.normal(size=(n, 16))
    log_hz = 2.0 * img[:, 0] + 0.6 * (rng.random(n) < 0.5)
    t_event = rng.exponential(np.exp(-log_hz)) * 365
    t_cens = rng.uniform(100, 1000, size=n)
    cohort = pd.DataFrame({
        "study_id": [f"s{i:03d}" for i in range(n)],
        "patient_id": [f"p{i:03d}" for i in range(n)],
        "split": np.array(["train"] * 140 + ["val"] * 20 + ["test"] * 40),
        "time": np.minimum(t_event, t_cens),
        "event": pd.array((t_event <= t_cens).astype(int), dtype="Int64"),
        "age": rng.integers(40, 90, size=n),
        "sex": pd.Categorical(rng.choice(["female", "male"], size=n)),
    })
    write_features(tmp_path / "image", cohort["study_id"], {"pooled": img})
    write_features(tmp_path / "text", cohort["study_id"][::-1], {"pooled": rng.normal(size=(n, 8))})
    truth = pd.DataFrame({"study_id": cohort["study_id"], "patient_id": cohort["patient_id"], "log_hazard": log_hz})
    truth.to_parquet(tmp_path / "truth.parquet")
    return cohort, {"image": tmp_path / "image", "text": tmp_path / "text"}, tmp_path


def test_train_evaluate_and_tabulate(cohort_and_stores):
    cohort, stores, tmp = cohort_and_stores
    runs = [("coxph", "clinical"), ("deepsurv", "image"), ("deephit", "both")]
    preds, mets = [], []
    for model, modality in runs:
        out = tmp / "baselines" / f"{model}_{modality}"
        summary = train_baseline(cohort, model, modality, ["age", "sex"], stores, SETTINGS, out)
        assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (140, 20, 40)
        p = pd.read_parquet(out / "predictions.parquet")
        assert len(p) == 200 and np.isfinite(p["risk"]).all()
        s = pd.read_parquet(out / "survival.parquet")
        assert s.shape == (200, 101) and (s.iloc[:, 1:].to_numpy() <= 1 + 1e-9).all()
        metrics = evaluate_baseline(p, s, out / "km.png", title=f"{model} {modality}", n_boot=100)
        assert (out / "km.png").stat().st_size > 1000
        assert metrics["harrell"]["n"] == 40 and metrics["ibs"] is not None and 0 <= metrics["km"]["logrank_p"] <= 1
        (out / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        preds.append(out / "predictions.parquet")
        mets.append(out / "metrics.json")
    table, md = dataset_results(preds, mets, "synthetic", truth_path=tmp / "truth.parquet", n_boot=100)
    by = table.set_index(table["model"] + "_" + table["modality"])
    assert list(by.index) == ["coxph_clinical", "deepsurv_image", "deephit_both", "oracle_known hazard"]
    # the image carries the hazard, the clinical table does not
    assert by.loc["deepsurv_image", "c_index"] > 0.65 > 0.6 > by.loc["coxph_clinical", "c_index"]
    assert by.loc["oracle_known hazard", "c_index"] > 0.75
    assert by.loc["deepsurv_image", "p_vs_coxph_clinical"] < 0.05
    assert "| deepsurv | image |" in md
    line = oracle_line(table)
    assert line.startswith("- synthetic: CoxPH (clinical) c-index") and "oracle (known hazard)" in line
    assert "Clinical CoxPH versus the known hazard" in report_markdown([md], [table])


def test_evaluate_baseline_scores_the_written_files(cohort_and_stores, tmp_path):
    """Rule train_baseline's second half: metrics.json and km.png from the files just written,
    the same numbers as evaluating those files on their own (the former evaluate_baseline job)."""
    cohort, stores, tmp = cohort_and_stores
    out = tmp / "baselines" / "deepsurv_clinical"
    train_baseline(cohort, "deepsurv", "clinical", ["age", "sex"], stores, SETTINGS, out)
    metrics = evaluate_written(out, title="deepsurv clinical", n_boot=100, seed=3, min_at_risk=5)
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == json.loads(json.dumps(metrics))
    assert (out / "km.png").stat().st_size > 1000
    alone = evaluate_baseline(pd.read_parquet(out / "predictions.parquet"), pd.read_parquet(out / "survival.parquet"),
                              tmp_path / "km_alone.png", title="deepsurv clinical", n_boot=100, seed=3, min_at_risk=5)
    assert json.dumps(alone, sort_keys=True) == json.dumps(metrics, sort_keys=True)


def test_evaluation_imports_neither_torch_nor_scikit_survival():
    """Results tables and metrics read stored predictions; a job that only does that should not
    pay for torch (ctsurv.survival's torch names are imported on first use)."""
    import subprocess
    import sys

    code = ("import sys, ctsurv.survival.evaluation, ctsurv.report.tables; "
            "bad = [m for m in ('torch', 'sksurv') if m in sys.modules]; "
            "from ctsurv.survival import cox_nll, discretize, make_cuts; import ctsurv.survival as s; "
            "assert callable(s.discretize) and callable(cox_nll) and 'cox_nll' in dir(s); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_feature_store_missing_studies_are_left_out(cohort_and_stores):
    cohort, stores, tmp = cohort_and_stores
    write_features(tmp / "image_partial", cohort["study_id"][5:], {"pooled": np.ones((195, 4))})
    summary = train_baseline(cohort, "deepsurv", "image", [], {"image": tmp / "image_partial"}, SETTINGS, tmp / "out")
    assert summary["n_train"] == 135


def test_bad_inputs_are_clear_errors(cohort_and_stores):
    cohort, stores, tmp = cohort_and_stores
    with pytest.raises(ConfigError, match="clinical table only"):
        train_baseline(cohort, "coxph", "image", [], stores, SETTINGS, tmp / "x")
    bad = cohort.copy()
    bad.loc[bad["split"] == "train", "event"] = 0
    with pytest.raises(DataError, match="train split.*no events"):
        train_baseline(bad, "coxph", "clinical", ["age"], stores, SETTINGS, tmp / "x")
    bad = cohort.copy()
    bad.loc[3, "time"] = -2.0
    with pytest.raises(DataError, match=r"'time'.*> 0.*rows 5"):
        train_baseline(bad, "coxph", "clinical", ["age"], stores, SETTINGS, tmp / "x")


def test_baseline_paths_cover_every_model_and_modality():
    from ctsurv.survival.paths import baseline_files, baseline_runs, feature_inputs, truth_input

    survival = {"heads": ["deepsurv", "deephit"], "modalities": ["clinical", "text", "image", "both"]}
    runs = baseline_runs(survival)
    assert runs[0] == ("coxph", "clinical") and len(runs) == 9
    assert baseline_runs({"heads": ["deepsurv"], "modalities": ["image"]}) == [("deepsurv", "image")]
    assert baseline_files("d", survival, "km.png")[1] == "results/d/baselines/deepsurv_clinical/km.png"
    assert feature_inputs("d", "both") == {"text": "results/d/features/text/index.parquet",
                                           "image": "results/d/features/image/index.parquet"}
    assert feature_inputs("d", "clinical") == {}
    assert truth_input("demo_lung", ["demo_lung"], "raw") == {"truth": "raw/demo_lung/truth.parquet"}
    assert truth_input("real", ["demo_lung"], "raw") == {}


def test_input_dimension_and_weight_decay_are_chosen_on_validation(cohort_and_stores):
    """Every (dimension, weight decay) pair is fitted; the best validation c-index is kept and
    recorded; one pair is the plain fit."""
    import json

    from ctsurv.survival.coxnet import cindex

    cohort, stores, tmp = cohort_and_stores
    out = tmp / "chosen"
    train_baseline(cohort, "deepsurv", "image", [], stores, SETTINGS, out, input_dims=[2, None], weight_decays=[0.0, 0.1])
    choice = json.loads((out / "input.json").read_text(encoding="utf-8"))
    assert len(choice["candidates"]) == 4
    best = max(c["val_cindex"] for c in choice["candidates"])
    assert choice["val_cindex"] == best and (choice["dims"], choice["weight_decay"]) in {
        (c["dims"], c["weight_decay"]) for c in choice["candidates"] if c["val_cindex"] == best}
    p = pd.read_parquet(out / "predictions.parquet")
    val = p[p["split"] == "val"]
    assert cindex(val["time"], val["event"], val["risk"]) == pytest.approx(choice["val_cindex"], abs=1e-4)
    # one candidate: the same model as without the option
    train_baseline(cohort, "deepsurv", "image", [], stores, SETTINGS, tmp / "plain")
    train_baseline(cohort, "deepsurv", "image", [], stores, SETTINGS, tmp / "one", input_dims=[None])
    a, b = (pd.read_parquet(tmp / d / "predictions.parquet")["risk"].to_numpy() for d in ("plain", "one"))
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="add null to survival.input_dims"):
        train_baseline(cohort, "deepsurv", "image", [], stores, SETTINGS, tmp / "bad", input_dims=[500])
