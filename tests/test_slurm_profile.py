"""The SLURM profile stays generic; each step's partition, memory and time follow from what it
needs (issue 12, item 9): extract_answers with the rules backend needs no GPU."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml


def test_step_resources_from_the_gpus_a_step_needs():
    from ctsurv.gpu import step_resources

    assert step_resources(0, gpu_partition="gpu") == {"gpu": 0}  # the profile's CPU defaults apply
    got = step_resources(1, gpu_partition="a100")
    assert got["gpu"] == 1 and got["slurm_partition"] == "a100"
    assert got["mem_mb"] >= 32000 and got["runtime"] >= 240


def test_profile_names_no_rule(repo):
    profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text(encoding="utf-8"))
    assert profile["default-resources"]["slurm_partition"] == "cpu"
    assert not profile.get("set-resources"), "per-rule partitions belong to the rules (from what they need)"


def _resources_of(output: str, rule: str) -> dict[str, str]:
    block = re.search(rf"rule {rule}:\n(.*?)\n\n", output + "\n\n", re.S)
    assert block, output[-3000:]
    line = re.search(r"resources: (.*)", block.group(1)).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


@pytest.mark.slow
@pytest.mark.parametrize("backend, partition", [("rules", "cpu"), ("vllm", "gpu")])
def test_dry_run_on_slurm_gives_extract_answers_the_partition_it_needs(tmp_path, repo, backend, partition):
    (tmp_path / "raw" / "images").mkdir(parents=True)
    rows = []
    for i in range(4):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(tmp_path / "raw" / "images" / f"s{i}.nii.gz"))
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i}", "image": f"images/s{i}.nii.gz",
                     "report": "report.", "time": 10.0 + i, "event": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "raw" / "manifest.csv", index=False)
    (tmp_path / "model").mkdir()
    config = {
        "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                              "clinical": {}, "clinical_sentence": "A patient."}},
        "extraction": {"backend": backend, "model": str(tmp_path / "model"), "shards": 1,
                       "questions": str(repo / "config" / "questions.yaml")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(repo / "profiles" / "slurm"), "-s", str(repo / "Snakefile"),
         "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path), "results/tiny/qa/answers.parquet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    got = _resources_of(res.stdout + res.stderr, "extract_answers")
    assert got["slurm_partition"] == partition
    if backend == "rules":
        assert got["gpu"] == "0" and int(got["mem_mb"]) <= 16000 and int(got["runtime"]) <= 120
    else:
        assert got["gpu"] == "1" and int(got["mem_mb"]) >= 32000
    assert _resources_of(res.stdout + res.stderr, "ingest")["slurm_partition"] == "cpu"
