"""Linear probes: a planted linear signal is recovered, noise is not, the CLI works anywhere."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctsurv.cli import main as cli_main
from ctsurv.errors import DataError
from ctsurv.features import write_features
from ctsurv.probe import ProbeColumn, column_values, probe_features, probe_markdown


def _planted(n=200, d=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    table = pd.DataFrame({
        "study_id": [f"s{i:03d}" for i in range(n)],
        "signal": x @ w + 0.05 * rng.normal(size=n),  # R² ~ 0.999
        "noise": rng.normal(size=n),
        "flag": (x[:, 0] > 0).astype(int),
        "site": np.where(x[:, 1] > 0.5, "left", None),
        "constant": 1.0,
    })
    return x, table


def test_planted_signal_is_recovered_and_noise_is_not():
    x, table = _planted()
    result = probe_features({"feat": x}, table, ["signal", "noise", "flag", "site:present", "constant"], n_boot=200)
    by = {t["column"]: t for t in result["targets"]}
    signal = by["signal"]["results"]["feat"]
    assert signal["metric"] == "r2" and signal["value"] > 0.98
    assert signal["ci_low"] <= signal["value"] <= signal["ci_high"] and signal["ci_low"] > 0.95
    assert len(signal["fold_values"]) == 5
    noise = by["noise"]["results"]["feat"]
    assert -0.15 < noise["value"] < 0.05  # no better than the mean
    flag = by["flag"]
    assert flag["kind"] == "binary" and flag["results"]["feat"]["metric"] == "auc"
    assert flag["results"]["feat"]["value"] > 0.95
    site = by["site:present"]
    assert site["kind"] == "binary" and site["results"]["feat"]["value"] > 0.9
    assert by["constant"]["skipped"]
    md = probe_markdown(result)
    assert "| signal | continuous | 200 | R² |" in md and "skipped" in md


def test_feature_sets_share_rows_and_missing_targets_are_dropped():
    x, table = _planted()
    table.loc[:49, "signal"] = np.nan
    rng = np.random.default_rng(1)
    result = probe_features({"random": rng.normal(size=x.shape), "trained": x}, table, ["signal"], n_boot=100)
    entry = result["targets"][0]
    assert entry["n"] == 150
    assert entry["results"]["trained"]["value"] > 0.95
    assert entry["results"]["random"]["value"] < 0.1


def test_column_errors_name_the_column_and_row():
    table = pd.DataFrame({"a": ["1.5", "x", "2"]})
    with pytest.raises(DataError, match=r"row 3, column 'a'.*a:present"):
        column_values(table, ProbeColumn.parse("a"))
    with pytest.raises(DataError, match="no column 'b'"):
        column_values(table, ProbeColumn.parse("b"))
    with pytest.raises(DataError, match="unknown transform"):
        ProbeColumn.parse("a:log")


def test_cli_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    x, table = _planted(n=120)
    write_features(tmp_path / "store", table["study_id"], {"pooled": x.astype(np.float16)})
    rng = np.random.default_rng(2)
    write_features(tmp_path / "random", table["study_id"], {"pooled": rng.normal(size=x.shape).astype(np.float16)})
    table.iloc[::-1].to_csv(tmp_path / "table.csv", index=False)  # row order differs from the store
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    rc = cli_main([
        "probe", str(tmp_path / "store"), str(tmp_path / "table.csv"), "--columns", "signal", "flag",
        "--name", "trained", "--compare", "random", str(tmp_path / "random"), "--bootstrap", "50", "--out", "out",
    ])
    assert rc == 0
    result = json.loads((work / "out" / "probe.json").read_text(encoding="utf-8"))
    signal = result["targets"][0]["results"]
    assert signal["trained"]["value"] > 0.95 and signal["random"]["value"] < 0.1
    assert "| signal |" in (work / "out" / "probe.md").read_text(encoding="utf-8")
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_a_wrong_id_column(tmp_path, capsys):
    x, table = _planted(n=40)
    write_features(tmp_path / "store", table["study_id"], {"pooled": x.astype(np.float16)})
    table.to_csv(tmp_path / "table.csv", index=False)
    rc = cli_main(["probe", str(tmp_path / "store"), str(tmp_path / "table.csv"), "--columns", "signal",
                   "--id-column", "patient", "--out", str(tmp_path / "out")])
    assert rc == 1
    assert "no id column 'patient'" in capsys.readouterr().err


def test_auc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from ctsurv.probe import auc_score

    rng = np.random.default_rng(3)
    for n in (7, 50, 301):
        y = (rng.random(n) < 0.3).astype(float)
        y[:2] = [0.0, 1.0]
        score = np.round(rng.normal(size=n), 1)  # many tied scores
        assert auc_score(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert auc_score(np.array([0.0, 1.0, 1.0]), np.array([0.2, 0.2, 0.2])) == 0.5
    assert np.isnan(auc_score(np.ones(5), np.arange(5.0)))


@pytest.mark.parametrize("kind", ["continuous", "binary"])
def test_bootstrap_scores_the_resamples_of_the_per_resample_loop(kind):
    """Vectorised scoring in blocks: the same resamples (seeded draws in turn) and values as
    scoring each with scikit-learn; resamples of one class are dropped."""
    from sklearn.metrics import r2_score as sk_r2
    from sklearn.metrics import roc_auc_score

    from ctsurv.probe import bootstrap_values

    rng = np.random.default_rng(4)
    n, n_boot = (2500, 1000) if kind == "continuous" else (14, 400)  # 2500 rows: several blocks
    if kind == "continuous":
        y = rng.normal(size=n)
        pred = y + rng.normal(size=n)
    else:
        y = np.zeros(n)
        y[:2] = 1.0  # few positives: some resamples have none
        pred = rng.normal(size=n) + y
    gen = np.random.default_rng(11)
    ref = []
    for _ in range(n_boot):
        idx = gen.integers(0, n, n)
        if kind == "continuous":
            ref.append(sk_r2(y[idx], pred[idx]))
        elif len(np.unique(y[idx])) == 2:
            ref.append(roc_auc_score(y[idx], pred[idx]))
    got = bootstrap_values(y, pred, kind, n_boot, seed=11)
    if kind == "binary":
        assert 0 < len(got) < n_boot  # some resamples dropped
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_random_weights_features_are_computed_like_a_store(tmp_path, monkeypatch):
    """The probe's random-weights features: the encoder's pooled output, rounded to float16 like
    a feature store, in the precision and memory format asked for; the store's precision is
    read from its encoder.json."""
    import torch

    import ctsurv.imaging.cache as cache
    from ctsurv.imaging.merlin import build_encoder
    from ctsurv.imaging.probe import pooled_features, store_precision

    rng = np.random.default_rng(5)
    volumes = {f"s{i}": rng.random((32, 32, 16)).astype(np.float32) for i in range(5)}
    monkeypatch.setattr(cache, "load_preprocessed", lambda folder, study: volumes[study])
    model = build_encoder(None, [1, 1, 1, 1], 4, 0)
    ids = list(volumes)
    with torch.inference_mode():
        ref = model.encode(torch.from_numpy(np.stack([volumes[s] for s in ids]))[:, None])[0].numpy()

    fp32 = pooled_features(ids, tmp_path, model, batch_size=2, precision="fp32", channels_last=False)
    assert fp32.dtype == np.float16 and fp32.shape == (5, model.out_channels)
    np.testing.assert_allclose(fp32, ref, rtol=2e-3, atol=1e-4)  # float16 rounding
    last = pooled_features(ids, tmp_path, model, batch_size=3, precision="fp32", channels_last=True)
    np.testing.assert_allclose(last, ref, rtol=2e-3, atol=1e-4)
    assert model.conv1.weight.is_contiguous()  # the model is left as it was
    bf16 = pooled_features(ids, tmp_path, model, batch_size=2, precision="bf16", channels_last="auto")
    assert not np.array_equal(bf16, fp32)  # computed in bf16
    np.testing.assert_allclose(bf16, ref, rtol=0.05, atol=0.02)

    assert store_precision(tmp_path, "fp32") == "fp32"  # no encoder.json: the default
    (tmp_path / "encoder.json").write_text(json.dumps({"precision": "bf16"}), encoding="utf-8")
    assert store_precision(tmp_path, "fp32") == "bf16"


def test_a_checkpoint_store_is_probed_beside_random_weights_and_tokens(tmp_path, monkeypatch):
    """With imaging.encoder.checkpoint set, probe_dataset still encodes the random-weights encoder
    on the same studies (its own column) and probes token_columns from the visual tokens too."""
    import torch

    import ctsurv.imaging.cache as cache
    from ctsurv.imaging.dense_pretrain import export_weights
    from ctsurv.imaging.merlin import build_encoder
    from ctsurv.imaging.probe import pooled_features, probe_dataset

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    ids = [f"s{i:02d}" for i in range(24)]
    volumes = {s: (rng.uniform(0.2, 1.0) * rng.random((32, 32, 16))).astype(np.float32) for s in ids}
    monkeypatch.setattr(cache, "load_preprocessed", lambda folder, study: volumes[study])
    trained = build_encoder(None, [1, 1, 1, 1], 4, 1)  # stands in for trained weights
    weights = export_weights(tmp_path / "ckpt" / "w.safetensors", trained, dtype=torch.float32)
    with torch.inference_mode():
        pooled, tokens = trained.encode(torch.from_numpy(np.stack([volumes[s] for s in ids]))[:, None])
    write_features(tmp_path / "store", ids, {"pooled": pooled.numpy().astype(np.float16), "tokens": tokens.numpy().astype(np.float16)})
    stored = pooled.numpy().astype(np.float16).astype(float)
    truth = pd.DataFrame({"study_id": ids, "size": 3 * stored[:, int(np.argmax(stored.std(axis=0)))],
                          "fat": rng.normal(size=24)})
    truth.to_parquet(tmp_path / "truth.parquet")
    (tmp_path / "qc").mkdir()
    encoder = {"checkpoint": str(tmp_path / "ckpt"), "layers": [1, 1, 1, 1], "width": 4, "seed": 0, "tokens": 49,
               "precision": "fp32", "batch_size": 4, "channels_last": False}
    probe = {"columns": ["size", "fat"], "token_columns": ["size"], "folds": 3, "bootstrap": 20, "max_studies": None, "seed": 0}
    result = probe_dataset(tmp_path / "store", tmp_path / "qc" / "qc.parquet", tmp_path / "truth.parquet", tmp_path / "out",
                           encoder, probe, pretrained=False)
    assert result["feature_sets"] == ["checkpoint", "random weights", "checkpoint tokens", "random weights tokens"]
    by = {t["column"]: t["results"] for t in result["targets"]}
    assert set(by["size"]) == set(result["feature_sets"]) and set(by["fat"]) == {"checkpoint", "random weights"}
    assert by["size"]["checkpoint"]["value"] > 0.8  # the planted signal is in the checkpoint's features
    random_pooled = pooled_features(ids, tmp_path, build_encoder(None, [1, 1, 1, 1], 4, 0), batch_size=4,
                                    precision="fp32", channels_last=False)
    assert not np.allclose(random_pooled, pooled.numpy(), atol=1e-2)  # the random column is another encoder
    md = (tmp_path / "out" / "probe.md").read_text()
    assert "| fat | continuous | 24 | R² |" in md and md.count(" - |") == 2
    assert weights.is_file()
