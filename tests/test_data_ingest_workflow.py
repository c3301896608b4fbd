"""`ctsurv ingest` and a real Snakemake run of rule ingest on a tiny manifest dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from ctsurv.cli import main as cli_main
from ctsurv.data.cohort import read_cohort

PY = sys.executable


def tiny_dataset(folder, n=12):
    """n studies of n/2 patients with SimpleITK-written 4x4x4 NIfTI volumes."""
    rows = []
    for i in range(n):
        image = sitk.GetImageFromArray(np.full((4, 4, 4), i, dtype=np.int16))
        image.SetSpacing((2.0, 2.0, 3.0))
        (folder / "images").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(folder / "images" / f"s{i}.nii.gz"))
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i // 2}", "image": f"images/s{i}.nii.gz",
                     "report": f"report {i}", "time": 10.0 + i, "event": i % 3 == 0, "age": 50 + i})
    table = pd.DataFrame(rows)
    table["event"] = table["event"].astype(int)
    table.to_csv(folder / "manifest.csv", index=False)


def write_config(tmp_path):
    tiny_dataset(tmp_path / "raw")
    config = {
        "splits": {"seed": 3, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                              "clinical": {"age": {"type": "int"}},
                              "clinical_sentence": "A {age}-year-old patient."}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path / "config.yaml"


def test_cli_ingest_writes_the_cohort_and_reports_errors_without_traceback(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["ingest", "--config", str(config), "--dataset", "tiny", "--out", "out/cohort.parquet"]) == 0
    cohort = read_cohort(tmp_path / "out" / "cohort.parquet")
    assert len(cohort) == 12 and cohort["age"].tolist() == list(range(50, 62))
    assert cohort.groupby("patient_id")["split"].nunique().max() == 1
    (tmp_path / "raw" / "images" / "s5.nii.gz").unlink()
    assert cli_main(["ingest", "--config", str(config), "--dataset", "tiny", "--out", "out/c2.parquet"]) == 1
    err = capsys.readouterr().err
    assert "raw/manifest.csv, row 7, study 's5', column 'image'" in err and "Traceback" not in err
    assert cli_main(["ingest", "--config", str(config), "--dataset", "nope", "--out", "x.parquet"]) == 1
    assert "no dataset 'nope'" in capsys.readouterr().err


def test_snakemake_runs_rule_ingest(tmp_path, repo):
    config = write_config(tmp_path)
    res = subprocess.run(
        [PY, "-m", "snakemake", "--cores", "1", "-s", str(repo / "Snakefile"), "--configfile", str(config),
         "--directory", str(tmp_path), "results/tiny/cohort.parquet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    cohort = read_cohort(tmp_path / "results" / "tiny" / "cohort.parquet")
    assert cohort["study_id"].tolist() == [f"s{i}" for i in range(12)]
    assert cohort["image"].iloc[3] == str(tmp_path / "raw" / "images" / "s3.nii.gz")
    assert cohort["event"].tolist() == [1, 0, 0] * 4 and cohort["time"].iloc[11] == 21.0
    per_patient = cohort.groupby("patient_id")["split"].first()
    assert per_patient.value_counts().to_dict() == {"train": 3, "val": 2, "test": 1}
    assert (tmp_path / "results" / "logs" / "ingest" / "tiny.log").exists()
    assert (tmp_path / "results" / "benchmarks" / "ingest" / "tiny.tsv").exists()
