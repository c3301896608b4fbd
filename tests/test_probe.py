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
