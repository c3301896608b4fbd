"""A real Snakemake run of extract_answers (2 shards, openai backend on a loopback server) and merge_answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from replay_server import fetch_json, running


def test_snakemake_extracts_in_shards_and_merges(tmp_path, repo):
    rows = []
    (tmp_path / "raw" / "images").mkdir(parents=True)
    for i in range(8):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(tmp_path / "raw" / "images" / f"s{i}.nii.gz"))
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i}", "image": f"images/s{i}.nii.gz",
                     "report": f"report {i}: small pleural effusion.", "time": 10.0 + i, "event": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "raw" / "manifest.csv", index=False)
    script = {"model": "mistral", "default": {"auto": "Not mentioned"},
              "rules": [{"match": "report 3:", "responses": [{"content": "{not json"}]}]}
    with running(script, tmp_path) as url:
        config = {
            "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
            "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                                  "clinical": {}, "clinical_sentence": "A patient."}},
            "extraction": {"backend": "openai", "url": url, "shards": 2, "retries": 0, "cache_dir": "cache",
                           "questions": str(repo / "config" / "questions.yaml")},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        res = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(repo / "Snakefile"), "--configfile",
             str(tmp_path / "config.yaml"), "--directory", str(tmp_path), "results/tiny/qa/answers.parquet"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        n_requests = len(fetch_json(url + "/_requests")["requests"])
    assert res.returncode == 0, res.stderr[-4000:]
    answers = pd.read_parquet(tmp_path / "results" / "tiny" / "qa" / "answers.parquet")
    assert len(answers) == 8 * 6 and sorted(answers["study_id"].unique()) == [f"s{i}" for i in range(8)]
    failed = answers[answers["status"] == "failed"]
    assert set(failed["study_id"]) == {"s3"} and failed["error"].str.startswith("invalid JSON").all()
    assert (answers.loc[answers["study_id"] != "s3", "status"] == "not_mentioned").all()
    assert set(answers["extractor"]) == {"openai:mistral"} and n_requests == 8
    shards = sorted(p.name for p in (tmp_path / "results" / "tiny" / "qa" / "shards").iterdir())
    assert shards == ["0-of-2.parquet", "1-of-2.parquet"]
    assert (tmp_path / "results" / "logs" / "extract_answers" / "tiny.0.log").exists()
    assert len(list((tmp_path / "cache").glob("batch-*.parquet"))) == 2
    # report text never reaches the logs
    logs = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "results" / "logs").rglob("*.log"))
    assert "pleural effusion" not in logs
