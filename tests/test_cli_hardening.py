"""Bad arguments and outputs stop every sub-command before it works (issue 12, items 19, 22, 25, 26).

Each case runs the command line in-process and asserts exit status 1 or 2, a message naming
the argument or file, no traceback, and an input left as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctsurv.cli import main as cli_main

PROC = Path("/proc/self")  # a folder nobody, root included, can create files in


def run(argv, capsys) -> tuple[int, str]:
    try:
        rc = cli_main([str(a) for a in argv])
    except SystemExit as stop:  # argparse errors exit 2 with the usage line
        rc = stop.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return rc, text


def cv_table(path: Path, n=40, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "study_id": [f"s{i:03d}" for i in range(n)],
        "age": rng.normal(60, 10, n).round(1),
        "sex": rng.choice(["female", "male"], n),
        "time": rng.uniform(1, 100, n).round(1),
        "event": np.tile([0, 1], n // 2),
    })
    df.to_csv(path, index=False)
    return path


CV = ["--time", "time", "--event", "event", "--model", "coxph", "--folds", "2"]


# ---- item 22: ctsurv cv ----------------------------------------------------------------

def test_cv_never_uses_the_study_id_as_a_feature(tmp_path, capsys):
    table = cv_table(tmp_path / "t.csv")
    rc, text = run(["cv", table, *CV, "--out", tmp_path / "cv.json"], capsys)
    assert rc == 0, text
    assert json.loads((tmp_path / "cv.json").read_text(encoding="utf-8"))["features"] == ["age", "sex"]
    rc, text = run(["cv", table, *CV, "--features", "age", "study_id", "--out", tmp_path / "cv2.json"], capsys)
    assert rc == 1 and "study_id" in text and "--features" in text


def test_cv_refuses_an_identifier_under_another_name(tmp_path, capsys):
    df = pd.read_csv(cv_table(tmp_path / "t.csv")).rename(columns={"study_id": "accession"})
    df.to_csv(tmp_path / "t.csv", index=False)
    rc, text = run(["cv", tmp_path / "t.csv", *CV], capsys)
    assert rc == 1 and "column 'accession'" in text and "identifier" in text


def test_cv_string_time_and_yes_event_are_clear_errors(tmp_path, capsys):
    df = pd.read_csv(cv_table(tmp_path / "t.csv"))
    bad_time = df.astype({"time": object})
    bad_time.loc[3, "time"] = "ten days"
    bad_time.to_csv(tmp_path / "time.csv", index=False)
    rc, text = run(["cv", tmp_path / "time.csv", *CV], capsys)
    assert rc == 1 and "time.csv, column 'time'" in text and "'ten days'" in text and "rows 5" in text
    df["event"] = df["event"].map({0: "no", 1: "yes"})
    df.to_csv(tmp_path / "yes.csv", index=False)
    rc, text = run(["cv", tmp_path / "yes.csv", *CV], capsys)
    assert rc == 1 and "yes.csv, column 'event'" in text and "0 (censored) or 1 (event)" in text


@pytest.mark.parametrize("args, flag", [
    (["--max-epochs", "0"], "--max-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--hidden", "0"], "--hidden"),
    (["--hidden", "32", "-4"], "--hidden"),
    (["--num-durations", "0"], "--num-durations"),
    (["--patience", "0"], "--patience"),
    (["--alpha", "1.5"], "--alpha"),
    (["--sigma", "0"], "--sigma"),
    (["--penalizer", "-0.1"], "--penalizer"),
    (["--folds", "1"], "--folds"),
])
def test_cv_bad_numbers_stop_at_parsing(tmp_path, capsys, args, flag):
    table = cv_table(tmp_path / "t.csv")
    rc, text = run(["cv", table, "--time", "time", "--event", "event", "--model", "deephit", *args], capsys)
    assert rc == 2 and f"argument {flag}" in text
    assert not list(tmp_path.glob("*.json"))


def test_cv_checks_its_output_before_the_work(tmp_path, capsys, monkeypatch):
    import ctsurv.survival.cv as cv

    table = cv_table(tmp_path / "t.csv")
    before = table.read_bytes()
    monkeypatch.setattr(cv, "cross_validate", lambda *a, **k: pytest.fail("cross-validation ran"))
    rc, text = run(["cv", table, *CV, "--out", table], capsys)
    assert rc == 1 and "would destroy the input" in text and table.read_bytes() == before
    rc, text = run(["cv", table, *CV, "--out", tmp_path / "t.csv" / "cv.json"], capsys)
    assert rc == 1 and "is a file" in text
    if PROC.exists():
        rc, text = run(["cv", table, *CV, "--out", PROC / "cv.json"], capsys)
        assert rc == 1 and "cannot write" in text
