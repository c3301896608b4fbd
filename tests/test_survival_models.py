"""Models, tabular encoding, cross-validation and ``ctsurv cv`` on synthetic tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.cli import main as cli_main
from ctsurv.errors import DataError
from ctsurv.survival.cv import cross_validate, make_folds, read_folds
from ctsurv.survival.fit import TrainConfig
from ctsurv.survival.models import CoxPH, DeepHit, DeepSurv, ModelSettings, deephit_risk
from ctsurv.survival.tabular import TabularEncoder

FAST = TrainConfig(lr=1e-2, batch_size=64, max_epochs=60, patience=8, seed=0)


def synthetic_table(n=300, seed=0) -> pd.DataFrame:
    """Known log-hazard 0.8 x1 - 0.5 x2 + 0.7 [stage = III], exponential times, ~30% censored."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    stage = rng.choice(["I", "II", "III"], size=n)
    log_hz = 0.8 * x1 - 0.5 * x2 + 0.7 * (stage == "III")
    t_event = rng.exponential(np.exp(-log_hz)) * 100
    t_cens = rng.uniform(20, 300, size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "stage": pd.Categorical(stage), "noise": rng.normal(size=n)})
    df.loc[rng.random(n) < 0.05, "x2"] = np.nan  # missing values to impute
    df["time"] = np.minimum(t_event, t_cens).round(1) + 0.1
    df["event"] = (t_event <= t_cens).astype(int)
    df["log_hz"] = log_hz
    return df


def test_tabular_encoder_fits_on_training_rows_only():
    train = pd.DataFrame({"a": [1.0, 3.0, np.nan], "c": ["x", "y", None]})
    test = pd.DataFrame({"a": [np.nan, 100.0], "c": ["z", "y"]})
    enc = TabularEncoder(["a", "c"]).fit(train)
    assert enc.columns == ["a", "c=y"]
    out = enc.transform(test)
    # test NaN takes the training median 2 -> standardised with training mean 2, sd 0.816
    assert out[0, 0] == pytest.approx(0.0) and out[1, 0] == pytest.approx((100 - 2) / np.std([1, 3, 2]))
    assert out[:, 1].tolist() == [0.0, 1.0]  # unseen level 'z' encodes as the reference
    with pytest.raises(DataError, match="'missing_col'"):
        TabularEncoder(["missing_col"]).fit(train)


def test_coxph_recovers_the_simulated_log_hazard():
    # Coefficients against an independent Efron fit: test_survival_references.py.  Here: the
    # wrapper plus the encoder find the simulated 0.8 x1 - 0.5 x2 + 0.7 [stage III].
    df = synthetic_table(n=3000)
    enc = TabularEncoder(["x1", "x2", "stage"]).fit(df)
    x = enc.transform(df)
    ours = CoxPH(penalizer=0.0).fit(x, df["time"], df["event"])
    coef = dict(zip(enc.columns, ours.model.coef_))
    # Numeric columns are standardised (coefficient per sd); stage indicators are not.
    assert coef["x1"] / enc.sd["x1"] == pytest.approx(0.8, abs=0.12)
    assert coef["x2"] / enc.sd["x2"] == pytest.approx(-0.5, abs=0.12)
    assert coef["stage=III"] == pytest.approx(0.7, abs=0.2) and abs(coef["stage=II"]) < 0.2
    surv = ours.predict_survival(x[:3], [10.0, 50.0, 100.0])
    assert surv.shape == (3, 3) and np.all(np.diff(surv, axis=1) <= 0)


def _split(df):
    return np.arange(0, 200), np.arange(200, 250), np.arange(250, len(df))


def _cindex(df, idx, risk):
    from sksurv.metrics import concordance_index_censored

    return concordance_index_censored(df["event"].to_numpy()[idx] == 1, df["time"].to_numpy()[idx], risk)[0]


@pytest.mark.parametrize("cls", [DeepSurv, DeepHit])
def test_networks_learn_the_known_hazard(cls):
    df = synthetic_table()
    x = TabularEncoder(["x1", "x2", "stage", "noise"]).fit(df.iloc[:200]).transform(df)
    tr, va, te = _split(df)
    t, e = df["time"].to_numpy(), df["event"].to_numpy()
    model = cls(train=FAST).fit(x[tr], t[tr], e[tr], x[va], t[va], e[va])
    assert _cindex(df, te, model.predict_risk(x[te])) > 0.68  # oracle is about 0.72
    surv = model.predict_survival(x[te], np.linspace(1, 200, 7))
    assert surv.shape == (len(te), 7) and np.all(np.diff(surv, axis=1) <= 1e-9) and np.all((surv >= 0) & (surv <= 1))
    assert 0 <= model.history.best_epoch < len(model.history.train_loss) <= FAST.max_epochs


def test_deephit_risk_is_minus_restricted_mean_survival():
    cuts = np.array([0.0, 1.0, 3.0])
    surv = np.array([[1.0, 0.5, 0.2], [0.9, 0.9, 0.9]])
    # S = 1 on [0, 0) (empty), S(c0) on [0, 1), S(c1) on [1, 3)
    assert deephit_risk(surv, cuts).tolist() == [-(1.0 * 1 + 0.5 * 2), -(0.9 + 0.9 * 2)]


def test_training_split_without_events_is_an_error():
    x = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(DataError, match="no events"):
        DeepSurv(train=FAST).fit(x, np.arange(1.0, 21.0), np.zeros(20))


def test_cross_validation_folds_file_reproduces_kfold(tmp_path):
    df = synthetic_table(n=200)
    folds = make_folds(df["event"], 4, seed=3)
    spec = {"folds": [{"train_idx": tr.tolist(), "test_idx": te.tolist()} for tr, te in folds]}
    (tmp_path / "folds.json").write_text(json.dumps(spec), encoding="utf-8")
    a = cross_validate(df, "time", "event", "coxph", features=["x1", "x2", "stage"], k=4, seed=3)
    b = cross_validate(df, "time", "event", "coxph", features=["x1", "x2", "stage"],
                       folds=read_folds(tmp_path / "folds.json", len(df)))
    assert [f["cindex"] for f in a["folds"]] == [f["cindex"] for f in b["folds"]]
    assert a["mean"] > 0.65 and a["sd"] == pytest.approx(np.std([f["cindex"] for f in a["folds"]], ddof=1))


def test_folds_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"folds": [{"train_idx": [0, 1], "test_idx": [1, 99]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="fold 1, test_idx: row index 99 outside"):
        read_folds(bad, 10)
    bad.write_text(json.dumps({"folds": [{"train_idx": [0, 1], "test_idx": [1, 2]}]}), encoding="utf-8")
    with pytest.raises(DataError, match="in both"):
        read_folds(bad, 10)


def test_cli_cv_writes_json_and_prints(tmp_path, capsys):
    df = synthetic_table(n=150).drop(columns="log_hz")
    path = tmp_path / "table.parquet"
    df.to_parquet(path)
    out = tmp_path / "cv.json"
    rc = cli_main(["cv", str(path), "--time", "time", "--event", "event", "--model", "deepsurv", "--folds", "3",
                   "--seed", "1", "--lr", "0.01", "--batch-size", "64", "--max-epochs", "30", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert len(result["folds"]) == 3 and result["features"] == ["x1", "x2", "stage", "noise"]
    printed = capsys.readouterr().out
    assert "fold 3: c-index" in printed and f"{result['mean']:.4f} ± {result['sd']:.4f}" in printed


def test_cli_cv_bad_events_is_a_clear_error(tmp_path, capsys):
    df = synthetic_table(n=30)
    df.loc[4, "event"] = 2
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    rc = cli_main(["cv", str(path), "--time", "time", "--event", "event", "--model", "coxph", "--folds", "2"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "table.csv, column 'event'" in err and "rows 6" in err and "Traceback" not in err


def test_settings_from_config_section():
    s = ModelSettings.from_config({"lr": 1e-3, "batch_size": 16, "max_epochs": 7, "patience": 2, "hidden": [8],
                                   "deephit": {"num_durations": 5, "cuts": "equidistant", "alpha": 0.5, "sigma": 0.2},
                                   "coxph": {"penalizer": 0.3}}, seed=4)
    assert (s.train.lr, s.train.batch_size, s.train.max_epochs, s.train.patience, s.train.seed) == (1e-3, 16, 7, 2, 4)
    assert (s.net.hidden, s.num_durations, s.scheme, s.alpha, s.sigma, s.penalizer) == ((8,), 5, "equidistant", 0.5, 0.2, 0.3)
