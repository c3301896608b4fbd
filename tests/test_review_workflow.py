"""Re-run semantics of the review rules, proven with real Snakemake runs.

A tiny workflow in tmp_path includes the real rules/common.smk and rules/review.smk; stand-in
rules play ingest and extraction (upstream) and training (downstream), so the tests do not
depend on those stages.  After a real run: saving the workbook unchanged re-runs nothing;
editing it re-runs apply_review and what depends on it, never extraction;
``--forcerun apply_review`` works.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_review_workbook import edit, make_answers

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

# stand-ins for ingest and extraction, upstream of the review rules (test_review_parts uses them too)
UPSTREAM_RULES = """
rule fake_ingest:
    input:
        "raw/cohort.parquet",
    output:
        "results/{dataset}/cohort.parquet",
    shell:
        "cp {input} {output}"


rule fake_extract:
    input:
        cohort="results/{dataset}/cohort.parquet",
        answers="raw/answers.parquet",
    output:
        "results/{dataset}/qa/answers.parquet",
    shell:
        "cp {input.answers} {output}"
"""

SNAKEFILE = f"""
configfile: "config.yaml"

include: "{REPO}/rules/common.smk"
include: "{REPO}/rules/review.smk"


rule all:
    input:
        "results/demo_lung/model.txt",
        "results/demo_lung/review/export.xlsx",
    default_target: True


{UPSTREAM_RULES}

rule fake_train:
    input:
        "results/{{dataset}}/instructions/train.json",
    output:
        "results/{{dataset}}/model.txt",
    shell:
        "wc -c {{input}} > {{output}}"
"""


def snakemake(workdir: Path, *args: str) -> str:
    run = subprocess.run([str(SNAKEMAKE), "--cores", "1", "--directory", str(workdir), "--snakefile", str(workdir / "Snakefile"), *args],
                         capture_output=True, text=True, cwd=workdir, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> job count of a dry run (its "Job stats" table); {} when nothing is to be done."""
    out = snakemake(workdir, "--dry-run", *args)
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = dict((name, int(n)) for name, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M))
    for name in ("total", "all"):
        jobs.pop(name, None)
    return jobs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("review_workflow")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["datasets"] = {"demo_lung": config["datasets"]["demo_lung"]}
    config["extraction"]["questions"] = str(REPO / "config" / "questions.yaml")
    config["review"] = {"workbook": "reviews/{dataset}.xlsx", "conversations": "per_question"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (workdir / "Snakefile").write_text(SNAKEFILE, encoding="utf-8")
    (workdir / "raw").mkdir()
    pd.DataFrame({
        "study_id": ["s0", "s1", "s2"], "patient_id": ["p0", "p1", "p2"], "split": ["train", "val", "test"],
        "image": ["/img/s0.nii.gz", "/img/s1.nii.gz", "/img/s2.nii.gz"], "report": ["Mass.", "Effusion.", "Normal."],
        "time": [10.0, 20.0, 30.0], "event": [1, 0, 1], "age": [64, 70, 51], "sex": ["male", "female", "male"],
        "smoking": ["former", "never", "current"], "stage": ["1", "2", "3"], "t_stage": ["T4", "T1", "T2"],
        "n_stage": ["N1", "N0", "N2"], "m_stage": ["M0", "M0", "M1"],
    }).to_parquet(workdir / "raw" / "cohort.parquet")
    make_answers().to_parquet(workdir / "raw" / "answers.parquet")
    snakemake(workdir)
    return workdir


def test_first_run_then_saving_unchanged_workbook_reruns_nothing(workdir):
    clinician = workdir / "reviews" / "demo_lung.xlsx"
    assert clinician.exists() and (workdir / "results/demo_lung/review/export.xlsx").exists()
    final = pd.read_parquet(workdir / "results/demo_lung/qa/final.parquet")
    assert set(final["decision"]) == {"pending"}  # no review yet: final equals extracted
    before = clinician.stat().st_mtime_ns
    edit(clinician, {})  # opened and saved without changes: new bytes, new mtime
    assert clinician.stat().st_mtime_ns != before
    assert planned_jobs(workdir) == {}


def test_forcerun_apply_review(workdir):
    assert planned_jobs(workdir, "--forcerun", "apply_review") == {"apply_review": 1, "build_instructions": 1, "fake_train": 1}


def test_edit_reruns_apply_review_and_downstream_only(workdir):
    edit(workdir / "reviews" / "demo_lung.xlsx", {"I2": "reject", "J2": "dr a"})  # s0 primary_tumor
    assert planned_jobs(workdir) == {"apply_review": 1, "build_instructions": 1, "fake_train": 1}
    snakemake(workdir)
    final = pd.read_parquet(workdir / "results/demo_lung/qa/final.parquet").set_index(["study_id", "question_id"])
    assert final.loc[("s0", "primary_tumor"), "decision"] == "reject"
    train = (workdir / "results/demo_lung/instructions/train.json").read_text(encoding="utf-8")
    assert "s0__primary_tumor" not in train and "s0__pleura" in train
    assert planned_jobs(workdir) == {}


def test_demo_dag_exports_and_applies_the_absent_review(repo):
    """The real Snakefile and config plan export_review, apply_review and build_instructions."""
    targets = [f"results/{d}/{f}" for d in ("demo_lung",) for f in ("review/export.xlsx", "qa/final.parquet", "instructions/train.json")]
    run = subprocess.run([str(SNAKEMAKE), "--dry-run", "--forceall", "--cores", "1", *targets], capture_output=True, text=True, cwd=repo, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = set(re.findall(r"^rule (\w+):", run.stdout, flags=re.M)) | set(re.findall(r"^(\w+)\s+\d+\s*$", run.stdout, flags=re.M))
    assert {"export_review", "apply_review", "build_instructions", "extract_answers"} <= jobs
