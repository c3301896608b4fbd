"""Every sub-command's basic use from an empty folder outside the repository (issue 12, item 13).

Commands run as a user runs them: ``python -m ctsurv ...`` in a fresh temporary folder, so no
default may point into the repository's ``config/``.  The paper's six questions, the demo
config and the config schema are package data; their sources stay in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctsurv import resources
from ctsurv.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(resources.SOURCES))
def test_packaged_copies_equal_their_repository_sources(name):
    source = REPO / resources.SOURCES[name]
    assert resources.packaged(name).read_bytes() == source.read_bytes(), (
        f"src/ctsurv/data/{name} differs from {resources.SOURCES[name]}: "
        f"cp {resources.SOURCES[name]} src/ctsurv/data/{name}"
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """An empty working folder far from the repository."""
    return tmp_path_factory.mktemp("user_folder")


def ctsurv(home: Path, *args, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "ctsurv", *map(str, args)], cwd=home, env=env,
                         capture_output=True, text=True, timeout=300)
    assert "Traceback" not in run.stderr, run.stderr
    if ok:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


def sub_commands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def test_every_sub_command_answers_help(home):
    names = sub_commands()
    assert {"cv", "demo-cohort", "extract-answers", "ingest", "mine-words", "preprocess-ct", "review"} <= set(names)
    # One interpreter for all of them (each --help exits; the loop catches that).
    code = ("import sys\nfrom ctsurv.cli import main\nfor name in sys.argv[1:]:\n"
            "    try:\n        main([name, '--help'])\n    except SystemExit as stop:\n        assert stop.code == 0, name\n")
    run = subprocess.run([sys.executable, "-c", code, *names], cwd=home, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    for name in names:
        assert f"usage: ctsurv {name}" in run.stdout


@pytest.fixture(scope="module")
def demo(home) -> Path:
    ctsurv(home, "demo-cohort", "--out", "demo", "--n-pretrain", "2", "--n-lung", "8", "--n-pe", "2", "--workers", "1", "--no-labels")
    return home / "demo"


def test_extract_answers_uses_the_packaged_questions(home, demo):
    ctsurv(home, "extract-answers", "demo/demo_lung/manifest.csv", "--id-column", "study_id", "--text-column", "report",
           "--out", "answers.parquet")
    answers = pd.read_parquet(home / "answers.parquet")
    assert sorted(answers["question_id"].unique()) == sorted(
        ["primary_tumor", "lymph_nodes", "pleura", "metastases", "vessels", "bones"])
    assert answers["study_id"].nunique() == 8


def test_ingest_preprocess_and_encode_images(home, demo):
    (home / "my.yaml").write_text(
        "datasets:\n  lung:\n    adapter: demo\n    role: survival\n    path: demo/demo_lung\n"
        "    clinical:\n      age: {type: int, min: 0, max: 120}\n", encoding="utf-8")
    ctsurv(home, "ingest", "--config", "my.yaml", "--dataset", "lung", "--out", "cohort.parquet")
    cohort = pd.read_parquet(home / "cohort.parquet")
    assert len(cohort) == 8
    ctsurv(home, "preprocess-ct", cohort["image"].iloc[0], "ct.npy", "--spacing", "8", "8", "8", "--size", "16", "16", "16")
    assert np.load(home / "ct.npy").shape == (16, 16, 16)

    from ctsurv.imaging.cache import write_entry

    write_entry(home / "cache", "s1", np.load(home / "ct.npy"), key={"source": "s1"})
    ctsurv(home, "encode-images", "cache", "features", "--width", "8", "--precision", "fp32", "--device", "cpu")
    assert (home / "features").is_dir() and any((home / "features").iterdir())


def test_mine_words_cv_encode_texts_gpu_run_review(home, demo):
    ctsurv(home, "mine-words", "demo/demo_lung/manifest.csv", "--text-column", "report", "--out", "words")
    assert (home / "words" / "top_words.csv").is_file()
    rng = np.random.default_rng(0)
    pd.DataFrame({"study_id": [f"s{i}" for i in range(40)], "age": rng.normal(60, 9, 40), "time": rng.uniform(1, 99, 40),
                  "event": np.tile([0, 1], 20), "sentence": ["A 60-year-old."] * 40}).to_csv(home / "table.csv", index=False)
    ctsurv(home, "cv", "table.csv", "--time", "time", "--event", "event", "--model", "coxph", "--folds", "2",
           "--features", "age", "--out", "cv.json")
    ctsurv(home, "encode-texts", "table.csv", "--id-column", "study_id", "--text-column", "sentence", "--out", "text")
    ctsurv(home, "gpu-run", "--gpus", "0", "--", sys.executable, "-c", "pass")
    status = ctsurv(home, "review", "status")
    assert "no answers yet" in status.stdout
    update = ctsurv(home, "review", "update", "demo_lung", ok=False)
    assert update.returncode == 1 and "no answers yet" in update.stderr
