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


# ---- items 19, 25, 26: every other command -----------------------------------------------

def manifest_dataset(tmp_path: Path, n=6) -> Path:
    """A manifest dataset (images only need to exist for ingest) and its config file."""
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(n):
        (tmp_path / "img" / f"s{i}.nii.gz").write_bytes(b"\0")
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i}", "image": f"img/s{i}.nii.gz", "report": "No effusion.",
                     "time": 10 + i, "event": i % 2, "age": 50 + i})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "datasets:\n  mine:\n    adapter: manifest\n    role: survival\n"
        f"    path: {tmp_path / 'manifest.csv'}\n    clinical:\n      age: {{type: int}}\n",
        encoding="utf-8",
    )
    return config


def test_ingest_refuses_to_write_over_its_manifest_or_config(tmp_path, capsys):
    config = manifest_dataset(tmp_path)
    manifest = tmp_path / "manifest.csv"
    before = manifest.read_bytes(), config.read_bytes()
    for out in (manifest, config):
        rc, text = run(["ingest", "--config", config, "--dataset", "mine", "--out", out], capsys)
        assert rc == 1 and "would destroy the input" in text
    assert (manifest.read_bytes(), config.read_bytes()) == before
    rc, text = run(["ingest", "--config", config, "--dataset", "mine", "--out", manifest / "cohort.parquet"], capsys)
    assert rc == 1 and "is a file" in text
    rc, text = run(["ingest", "--config", config, "--dataset", "mine", "--out", tmp_path / "out" / "cohort.parquet"], capsys)
    assert rc == 0, text


def test_mine_words_checks_numbers_and_its_output_folder(tmp_path, capsys):
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"report": ["No effusion.", "Small nodule."]}).to_csv(reports, index=False)
    for args, flag in ((["--top-n", "-5"], "--top-n"), (["--english-floor", "-1"], "--english-floor"),
                       (["--plot-top", "0"], "--plot-top"), (["--min-doc-fraction", "2"], "--min-doc-fraction")):
        rc, text = run(["mine-words", reports, "--text-column", "report", "--out", tmp_path / "m", *args], capsys)
        assert rc == 2 and f"argument {flag}" in text
    rc, text = run(["mine-words", reports, "--text-column", "report", "--out", reports], capsys)
    assert rc == 1 and "--out" in text and "is a file" in text
    if PROC.exists():
        rc, text = run(["mine-words", reports, "--text-column", "report", "--out", PROC / "m"], capsys)
        assert rc == 1 and "cannot write" in text
    assert not (tmp_path / "m").exists()


def test_preprocess_ct_never_writes_over_its_input(tmp_path, capsys):
    image = tmp_path / "ct.nii.gz"
    image.write_bytes(b"not read: refused before")
    rc, text = run(["preprocess-ct", image, image], capsys)
    assert rc == 1 and "would destroy the input" in text and image.read_bytes() == b"not read: refused before"
    (tmp_path / "link.nii.gz").symlink_to(image)
    rc, text = run(["preprocess-ct", image, tmp_path / "link.nii.gz"], capsys)
    assert rc == 1 and "would destroy the input" in text
    rc, text = run(["preprocess-ct", image, image / "out.nii.gz"], capsys)
    assert rc == 1 and "is a file" in text
    series = tmp_path / "dicom"
    series.mkdir()
    (series / "IM0001.dcm").write_bytes(b"x")
    rc, text = run(["preprocess-ct", series, series / "out.nii.gz"], capsys)
    assert rc == 1 and "inside the input folder" in text and [p.name for p in series.iterdir()] == ["IM0001.dcm"]
    for args in (["--spacing", "nan", "4", "6"], ["--spacing", "0", "1", "1"], ["--size", "0", "1", "1"], ["--input-spacing", "-1", "1", "1"]):
        rc, text = run(["preprocess-ct", image, tmp_path / "out.nii.gz", *args], capsys)
        assert rc == 2 and f"argument {args[0]}" in text


def test_demo_cohort_checks_sizes_and_its_output_folder(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    rc, text = run(["demo-cohort", "--out", a_file], capsys)
    assert rc == 1 and "is a file" in text
    rc, text = run(["demo-cohort", "--out", a_file / "demo"], capsys)
    assert rc == 1 and "is a file" in text
    rc, text = run(["demo-cohort", "--out", tmp_path / "d", "--workers", "0"], capsys)
    assert rc == 2 and "argument --workers" in text
    rc, text = run(["demo-cohort", "--out", tmp_path / "d", "--n-pe", "-3"], capsys)
    assert rc == 1 and "--n-pe must be at least 1" in text
    assert not (tmp_path / "d").exists()


def test_extract_answers_never_writes_over_its_reports(tmp_path, capsys):
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"id": ["a"], "text": ["No effusion."]}).to_csv(reports, index=False)
    before = reports.read_bytes()
    rc, text = run(["extract-answers", reports, "--id-column", "id", "--text-column", "text", "--out", reports], capsys)
    assert rc == 1 and "would destroy the input" in text and reports.read_bytes() == before
    rc, text = run(["extract-answers", reports, "--id-column", "id", "--text-column", "text", "--out", tmp_path / "a.parquet",
                    "--cache-dir", reports], capsys)
    assert rc == 1 and "--cache-dir" in text
    for args in (["--batch-size", "0"], ["--concurrency", "0"], ["--max-tokens", "0"], ["--timeout", "-1"], ["--retries", "-1"]):
        rc, text = run(["extract-answers", reports, "--id-column", "id", "--text-column", "text", "--out", tmp_path / "a.parquet", *args], capsys)
        assert rc == 2 and f"argument {args[0]}" in text


def test_encoders_check_numbers_and_outputs(tmp_path, capsys):
    cache = tmp_path / "ct"
    cache.mkdir()
    for args in (["--batch-size", "0"], ["--layers", "0", "0", "0", "0"], ["--width", "0"], ["--workers", "-1"]):
        rc, text = run(["encode-images", cache, tmp_path / "features", *args], capsys)
        assert rc == 2 and f"argument {args[0]}" in text
    rc, text = run(["encode-images", cache, cache], capsys)
    assert rc == 1 and "would destroy the input" in text
    rc, text = run(["encode-images", tmp_path / "no_cache", tmp_path / "features"], capsys)
    assert rc == 1 and "cache folder not found" in text
    table = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a"], "s": ["A 60-year-old."]}).to_csv(table, index=False)
    rc, text = run(["encode-texts", table, "--id-column", "id", "--text-column", "s", "--out", table], capsys)
    assert rc == 1 and "would destroy the input" in text
    rc, text = run(["encode-texts", table, "--id-column", "id", "--text-column", "s", "--out", tmp_path / "f", "--batch-size", "0"], capsys)
    assert rc == 2


def test_gpu_run_checks_the_count_and_the_command(tmp_path, capsys):
    rc, text = run(["gpu-run", "--gpus", "-1", "--", "true"], capsys)
    assert rc == 2 and "argument --gpus" in text
    rc, text = run(["gpu-run", "--gpus", "0", "--", "no-such-program-ctsurv"], capsys)
    assert rc == 1 and "'no-such-program-ctsurv' not found" in text
    assert run(["gpu-run", "--gpus", "0", "--", "true"], capsys)[0] == 0
