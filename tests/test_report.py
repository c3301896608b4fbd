"""Results report: Table 2 on a tiny run (baselines + ours + oracle), Fig. 3, the page, BERTScore."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.report.bertscore import answer_bertscore, sample_pairs
from ctsurv.report.paper import dataset_table, pretraining_figure, results_page
from ctsurv.survival.evaluation import breslow_survival, evaluate_predictions, survival_table


def _run_files(folder, study, split, time, event, risk, train_mask, questions=False):
    folder.mkdir(parents=True)
    pred = pd.DataFrame({"study_id": study, "split": split, "time": time, "event": event, "risk": risk})
    grid = np.linspace(0, time.max(), 20)
    surv = survival_table(study, grid, breslow_survival(risk[train_mask], time[train_mask], event[train_mask], risk, grid))
    metrics = evaluate_predictions(pred, surv, folder / "km.png", n_boot=200)
    if questions:
        metrics["bertscore"] = {"f1": 0.87, "n_pairs": 10,
                                "model": {"model": "models/roberta-large", "layer": 17, "rescaled": False, "baseline": None}}
    pred.to_parquet(folder / "predictions.parquet")
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return folder / "predictions.parquet", folder / "metrics.json"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(1)
    n = 300
    clinical, image = rng.normal(size=n), rng.normal(size=n)
    log_hz = 0.3 * clinical + 1.5 * image
    t_event = rng.exponential(np.exp(-log_hz)) * 100
    t_cens = rng.uniform(20, 300, n)
    time, event = np.minimum(t_event, t_cens), (t_event <= t_cens).astype(int)
    split = np.array(["train"] * 200 + ["val"] * 20 + ["test"] * 80)
    study = np.array([f"s{i:03d}" for i in range(n)])
    train = split == "train"
    pd.DataFrame({"study_id": study, "log_hazard": log_hz}).to_parquet(tmp / "truth.parquet")
    noise = lambda s: rng.normal(scale=s, size=n)  # noqa: E731
    risks = {"baselines/coxph_clinical": clinical, "baselines/deepsurv_image": image + noise(1.0),
             "stage2/deepsurv_with": log_hz + noise(0.3), "stage2/deepsurv_without": image + noise(0.8)}
    files = {k: _run_files(tmp / k, study, split, time, event, r, train, k.startswith("stage2")) for k, r in risks.items()}
    return tmp, files


def test_table2_rows_columns_and_tests(tiny_run):
    tmp, files = tiny_run
    base = [files["baselines/coxph_clinical"], files["baselines/deepsurv_image"]]
    ours = [files["stage2/deepsurv_with"], files["stage2/deepsurv_without"]]
    table, md = dataset_table([b[0] for b in base], [b[1] for b in base], [o[0] for o in ours], [o[1] for o in ours],
                              "tiny", truth_path=tmp / "truth.parquet", n_boot=300)
    assert table["method"].tolist() == ["CoxPH", "DeepSurv", "Ours (DeepSurv)", "Ours (DeepSurv)", "oracle (known hazard)"]
    by = table.set_index(table["method"] + "/" + table["pretrain"].map(lambda v: "None" if v is None or v != v else str(bool(v))))
    w, wo = by.loc["Ours (DeepSurv)/True"], by.loc["Ours (DeepSurv)/False"]
    assert w["report"] and w["clinical"] and w["image"] and w["bertscore"] == pytest.approx(0.87)
    cox = by.loc["CoxPH/None"]
    assert cox["clinical"] and not cox["image"] and pd.isna(cox["bertscore"])
    assert not by.loc["DeepSurv/None", "clinical"] and by.loc["DeepSurv/None", "image"]
    # the hazard is mostly in the image: ours with pre-training beats the clinical CoxPH clearly
    assert w["c_index"] > cox["c_index"] + 0.1 and w["p_vs_coxph"] < 0.05
    assert w["best_baseline"] == "deepsurv_image" and w["p_vs_best_baseline"] < 0.05 and w["diff_vs_best_baseline"] > 0
    assert w["c_index"] >= wo["c_index"]
    assert w["ci_low"] < w["c_index"] < w["ci_high"] and w["n_test"] == 80
    assert pd.isna(cox["p_vs_coxph"]) and pd.isna(by.loc["DeepSurv/None", "p_vs_best_baseline"])
    assert "| Ours (DeepSurv) | clinical sentence + image + questions | ✓ | ✓ | ✓ | ✓ |" in md
    assert "| CoxPH | clinical table | – | ✗ | ✓ | ✗ |" in md
    assert "BERTScore: F1 of the generated against the reference test answers, scored by models/roberta-large, layer 17, " \
           "not rescaled." in md  # the report says which model scored
    page = results_page([table], [md], ["tiny_fig3.png"])
    note = page.split("## Closing note")[1]
    assert "tiny: CoxPH (clinical)" in note and "with pre-training" in note and "oracle (known hazard)" in note
    assert "![tiny_fig3](tiny_fig3.png)" in page


def test_pretraining_figure(tiny_run, tmp_path):
    _, files = tiny_run
    stats = pretraining_figure(files["stage2/deepsurv_with"][0], files["stage2/deepsurv_without"][0], tmp_path / "f.png",
                               "tiny DeepSurv")
    assert (tmp_path / "f.png").stat().st_size > 5000 and len(stats) == 2
    assert stats[0]["n_high"] + stats[0]["n_low"] == 80 and stats[0]["logrank_p"] < 0.05


def test_breslow_matches_scikit_survival_coxph():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    t = rng.exponential(np.exp(-x[:, 0])) + 0.01
    e = rng.random(80) < 0.8
    model = CoxPHSurvivalAnalysis().fit(x, Surv.from_arrays(e, t))
    times = np.quantile(t, [0.1, 0.5, 0.9])
    ours = breslow_survival(model.predict(x), t, e, model.predict(x[:3]), times)
    theirs = np.stack([fn(times) for fn in model.predict_survival_function(x[:3])])
    assert ours == pytest.approx(theirs, abs=1e-10)


def test_bertscore_on_seeded_pairs():
    table = pd.DataFrame({"question_id": ["q1", "q2"] * 5, "generated": ["no pleural effusion", "tumor in the left lung"] * 5,
                          "reference": ["no pleural effusion", "bone lesion in the spine"] * 5})
    assert sample_pairs(table, n=4, seed=1).equals(sample_pairs(table, n=4, seed=1)) and len(sample_pairs(table, 4)) == 4
    res = answer_bertscore(table, n=500, seed=0)
    assert res["n_pairs"] == 10
    assert res["per_question"]["q1"] == pytest.approx(1.0, abs=1e-4) and res["per_question"]["q2"] < 0.9


def test_stage2_and_report_paths():
    from ctsurv.report.paths import pretraining_figures, stage2_inputs, stage2_runs

    s2 = {"heads": ["deepsurv", "deephit"], "pretrain": ["with", "without"]}
    runs = stage2_runs("d", s2, "metrics.json")
    assert len(runs) == 4 and runs[1] == "results/d/stage2/deepsurv_without/metrics.json"
    assert stage2_inputs("d", "with", None, "S1", "DEMO")["stage1"] == "S1"
    assert stage2_inputs("d", "without", None, "S1", "DEMO")["decoder"] == "DEMO"
    assert "decoder" not in stage2_inputs("d", "without", "/models/radllama", "S1", "DEMO")
    assert pretraining_figures(["a"], s2) == ["results/a/results/km_pretraining_deepsurv.png", "results/a/results/km_pretraining_deephit.png"]
    assert pretraining_figures(["a"], {"heads": ["deepsurv"], "pretrain": ["with"]}) == []


# -- issue 23: damaged run files are errors naming the file, never a traceback or a silent change --

def _damage_json(path, kind):
    text = path.read_text(encoding="utf-8")
    if kind == "folder":
        path.unlink()
        path.mkdir()
    else:
        path.write_text({"empty": "", "cut short": text[: len(text) // 2], "not metrics": "[1, 2]",
                         "no c-index": json.dumps({"uno": 0.6})}[kind], encoding="utf-8")


def _copy_runs(tiny_run, tmp_path):
    import shutil

    tmp, files = tiny_run
    out = {}
    for key, (pred, met) in files.items():
        folder = tmp_path / key
        shutil.copytree(pred.parent, folder)
        out[key] = (folder / pred.name, folder / met.name)
    return out


def _table(files, tmp_path=None):
    base = [files["baselines/coxph_clinical"], files["baselines/deepsurv_image"]]
    ours = [files["stage2/deepsurv_with"], files["stage2/deepsurv_without"]]
    return dataset_table([b[0] for b in base], [b[1] for b in base], [o[0] for o in ours], [o[1] for o in ours], "tiny",
                         n_boot=20)


@pytest.mark.parametrize("run", ["baselines/deepsurv_image", "stage2/deepsurv_with"])
@pytest.mark.parametrize("kind", ["empty", "cut short", "not metrics", "no c-index", "folder"])
def test_a_damaged_metrics_file_is_an_error_naming_it(tiny_run, tmp_path, run, kind):
    from ctsurv.errors import DataError

    files = _copy_runs(tiny_run, tmp_path)
    _damage_json(files[run][1], kind)
    with pytest.raises(DataError, match=str(files[run][1]).replace("\\", "\\\\")) as err:
        _table(files)
    assert "rerun the rule" in str(err.value)


def _with_nan_risk(path, studies=("s205", "s250")):
    pred = pd.read_parquet(path)
    pred.loc[pred["study_id"].isin(studies), "risk"] = [np.nan, np.inf][: len(studies)]
    pred.to_parquet(path)


@pytest.mark.parametrize("run", ["baselines/coxph_clinical", "stage2/deepsurv_with"])
def test_non_finite_predictions_are_refused_by_the_report_naming_file_and_patients(tiny_run, tmp_path, run):
    """A NaN risk changed Table 2's p-value against the CoxPH (0.36 -> 0.2) and the KM split silently."""
    from ctsurv.errors import DataError

    files = _copy_runs(tiny_run, tmp_path)
    _with_nan_risk(files[run][0])
    for call in (lambda: _table(files),
                 lambda: pretraining_figure(files[run][0], files["stage2/deepsurv_without"][0], tmp_path / "f.png", "t")):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert str(files[run][0]) in msg and "non-finite risk" in msg and "2 of 300 patients" in msg
        assert "'s205'" in msg and "'s250'" in msg


def test_evaluation_refuses_non_finite_predictions(tiny_run, tmp_path):
    from ctsurv.errors import DataError
    from ctsurv.survival.baselines import evaluate_baseline

    files = _copy_runs(tiny_run, tmp_path)
    pred_path = files["baselines/deepsurv_image"][0]
    pred = pd.read_parquet(pred_path)
    grid = np.linspace(1, 100, 5)
    surv = survival_table(pred["study_id"], grid, np.full((len(pred), 5), 0.5))
    surv.to_parquet(pred_path.parent / "survival.parquet")
    assert evaluate_baseline(pred_path.parent, "t", n_boot=10)["harrell"]["n"] == 80  # intact: evaluated
    _with_nan_risk(pred_path, ("s210",))
    with pytest.raises(DataError, match=r"predictions.parquet: non-finite risk .* 1 of 300 patients \(study 's210'\)"):
        evaluate_baseline(pred_path.parent, "t", n_boot=10)
    with pytest.raises(DataError, match=r"^predictions: non-finite risk"):
        evaluate_predictions(pd.read_parquet(pred_path), None, tmp_path / "km.png", n_boot=10)
    pred.to_parquet(pred_path)
    surv.iloc[3, 2] = np.nan
    surv.to_parquet(pred_path.parent / "survival.parquet")
    with pytest.raises(DataError, match=r"survival.parquet: non-finite survival probabilities for 1 patients \(study 's003'\)"):
        evaluate_baseline(pred_path.parent, "t", n_boot=10)


def test_bertscore_model_from_config_with_layers_and_baseline_rescaling(tmp_path):
    """The scoring model, its layer and bert-score's baseline rescaling come from vlm.evaluate;
    the result names what scored."""
    from ctsurv.errors import ConfigError
    from ctsurv.report.bertscore import BertScoreModel, bertscore_f1

    cands, refs = ["no pleural effusion", "tumor in the left lung"], ["no pleural effusion", "bone lesion in the spine"]
    plain = BertScoreModel.from_config({"bertscore_model": "minilm", "bertscore_layers": 6})
    assert plain == BertScoreModel() and plain.describe()["rescaled"] is False
    f6 = bertscore_f1(cands, refs, plain)
    f3 = bertscore_f1(cands, refs, BertScoreModel(layers=3))
    assert f6[0] == pytest.approx(1.0, abs=1e-4) and abs(f3[1] - f6[1]) > 1e-3  # another layer, another score
    with pytest.raises(ConfigError, match="ships no baseline for a model named 'all-MiniLM-L6-v2'"):
        bertscore_f1(cands, refs, BertScoreModel(rescale=True))
    # bert-score's baseline format: a header, then per layer the P, R, F baselines
    baseline = tmp_path / "minilm.tsv"
    baseline.write_text("LAYER,P,R,F\n" + "".join(f"{k},0.5,0.5,{0.1 * k}\n" for k in range(7)), encoding="utf-8")
    scorer = BertScoreModel.from_config({"bertscore_model": "minilm", "bertscore_layers": 6, "bertscore_rescale": True,
                                         "bertscore_baseline": str(baseline)})
    rescaled = bertscore_f1(cands, refs, scorer)
    assert rescaled == pytest.approx((f6 - 0.6) / (1 - 0.6), abs=1e-5)
    assert scorer.describe() == {"model": "all-MiniLM-L6-v2", "layer": 6, "rescaled": True, "baseline": str(baseline)}
    res = answer_bertscore(pd.DataFrame({"question_id": ["q1", "q2"], "generated": cands, "reference": refs}), scorer=scorer)
    assert res["model"]["rescaled"] and res["f1"] == pytest.approx(rescaled.mean())


def test_best_baseline_is_picked_on_validation_not_on_test():
    """Two baselines: one better on the validation patients, the other on the test patients.
    Table 2 compares ours with the validation winner."""
    from ctsurv.report.tables import best_by_validation, paper_table, val_cindex
    from ctsurv.survival.metrics import harrell_cindex

    rng = np.random.default_rng(4)
    n = 240
    log_hz = rng.normal(size=n)
    time = rng.exponential(np.exp(-log_hz)) * 100
    event = (rng.random(n) < 0.8).astype(int)
    split = np.array(["train"] * 80 + ["val"] * 80 + ["test"] * 80)
    study = np.array([f"s{i:03d}" for i in range(n)])
    noisy = log_hz + rng.normal(scale=3.0, size=n)
    val, test = split == "val", split == "test"
    # A follows the hazard on validation and is noise on test; B the other way round
    a_risk, b_risk = np.where(val, log_hz, noisy), np.where(test, log_hz, noisy)

    def run(model, modality, risk):
        pred = pd.DataFrame({"study_id": study, "split": split, "time": time, "event": event, "risk": risk})
        h = harrell_cindex(time[test], event[test], risk[test], n_boot=50)
        harrell = {"cindex": h.cindex, "lower": h.lower, "upper": h.upper, "n": h.n, "events": h.events}
        return {"model": model, "modality": modality, "predictions": pred, "metrics": {"harrell": harrell}}

    a, b = run("deepsurv", "image", a_risk), run("deephit", "both", b_risk)
    assert val_cindex(a) > val_cindex(b) + 0.1 and b["metrics"]["harrell"]["cindex"] > a["metrics"]["harrell"]["cindex"]
    assert best_by_validation([b, a]) is a
    ours = dict(run("deepsurv", "joint", log_hz), pretrain="with")
    table = paper_table([b, a], [ours], "tiny", n_boot=50)
    row = table[table["method"] == "Ours (DeepSurv)"].iloc[0]
    assert row["best_baseline"] == "deepsurv_image"
    assert table["val_c_index"].iloc[:2].tolist() == pytest.approx([val_cindex(b), val_cindex(a)])
    no_val = {**a, "predictions": a["predictions"][~val]}
    assert np.isnan(val_cindex(no_val)) and best_by_validation([no_val]) is None
