"""Rules re-run only what a change touches (issue 23 item 7).

The demo workflow's outputs are made to exist (empty files, then ``snakemake --touch``, which
records each job's params), then one setting at a time is changed and a dry run with
``--rerun-triggers params`` lists the jobs whose params changed: only the steps that read the
setting.  (Jobs downstream of those re-run because their inputs change; that is right.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
REPO = Path(__file__).resolve().parents[1]

# changes of one stage's settings (a YAML snippet) -> (rules whose params may change, rules whose must)
CHANGES = {
    "stage 2": ("vlm: {stage2: {pool: POOL, bottleneck: 8, heads: [deepsurv], predict: {batch_size: 3}}}\n",
                {"train_stage2", "predict_stage2"}, {"train_stage2"}),
    "image encoder, baselines, mining": (
        "imaging: {qc_sample: 2, encoder: {checkpoint: enc.safetensors}}\n"
        "survival: {modalities: [clinical, image], bootstrap: {n: 10}}\nmining: {draft_model: other}\n",
        {"encode_images", "probe_features", "merge_qc", "train_baseline", "baseline_table", "evaluate_stage2", "results_table"},
        {"merge_qc", "train_baseline"}),
    "sentence and evaluation": ("datasets: {demo_pe: {clinical_sentence: 'A {age}-year-old {sex}.'}}\n"
                                "vlm: {evaluate: {max_new_tokens: 5, bertscore_layers: 5}}\n",
                                {"build_instructions", "encode_clinical_text", "predict_stage2", "evaluate_stage1",
                                 "evaluate_stage2"}, {"evaluate_stage1"}),
}


def _run(workdir: Path, repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-s", str(repo / "Snakefile"), "--directory", str(workdir), "--cores", "1", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def done_workflow(tmp_path_factory):
    """A demo workflow folder whose every output exists with its params recorded."""
    repo = REPO
    workdir = tmp_path_factory.mktemp("params")
    (workdir / "config").mkdir()
    for name in ("config.yaml", "questions.yaml"):
        shutil.copy(repo / "config" / name, workdir / "config" / name)
    (workdir / "enc.safetensors").write_bytes(b"")  # a checkpoint path for the change below
    summary = _run(workdir, repo, "--summary")
    assert summary.returncode == 0, summary.stderr
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if "." in path.name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:  # directory() outputs: model folders, image folders
            path.mkdir(parents=True, exist_ok=True)
    touched = _run(workdir, repo, "--touch", "--forceall")  # every job, so each records its params
    assert touched.returncode == 0, touched.stderr
    return workdir


def _params_changed(workdir: Path, repo: Path, snippet: str) -> set[str]:
    (workdir / "change.yaml").write_text(snippet, encoding="utf-8")
    run = _run(workdir, repo, "-n", "--rerun-triggers", "params", "--configfile", str(workdir / "config/config.yaml"),
               str(workdir / "change.yaml"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "missing provenance" not in run.stdout + run.stderr  # every job's params are on record
    match = re.search(r"params have changed since last execution:\n\s+(.*)\n", run.stdout)
    return set(match.group(1).replace(",", " ").split()) if match else set()


@pytest.mark.parametrize("stage", list(CHANGES))
def test_a_change_re_runs_only_the_steps_that_read_it(done_workflow, stage):
    """Before: the stage-2 change re-ran train_stage1 (params held all of vlm), the encoder
    checkpoint re-ran preprocess_ct (all of imaging), the sentence re-ran ingest, the mining
    server re-ran mine_words, the list of baseline modalities re-ran every baseline."""
    snippet, allowed, must = CHANGES[stage]
    if "POOL" in snippet:  # the other pooling than the demo's
        import yaml

        demo = yaml.safe_load((done_workflow / "config/config.yaml").read_text(encoding="utf-8"))
        snippet = snippet.replace("POOL", "all" if demo["vlm"]["stage2"]["pool"] == "prompt" else "prompt")
    changed = _params_changed(done_workflow, REPO, snippet)
    assert changed <= allowed, f"{stage}: the params of {sorted(changed - allowed)} changed"
    assert must <= changed, f"{stage}: {sorted(must - changed)} should re-run"
