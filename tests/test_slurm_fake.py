"""The SLURM profile exercised without a cluster (issue 22, item 4).

tests/fake_slurm/ puts sbatch, squeue, sacct, scancel, srun, sinfo and scontrol on PATH; they
record what snakemake-executor-plugin-slurm (2.x) submits and run it.  A real
``snakemake --profile profiles/slurm`` then takes a tiny cohort through ingest, the sharded
CT preprocessing and the GPU encoding; a job the fake reports FAILED is resubmitted (retries)
or reported.  Every rule of the demo DAG is checked too: the plugin's own submit-string code
on the resources Snakemake resolves for each job under the profile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from test_imaging_shards import ENCODER, tiny_cohort

FAKE = os.path.join(os.path.dirname(__file__), "fake_slurm")


def slurm_env(state):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and not k.startswith("SLURM_")}
    env.update(PATH=f"{FAKE}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}",
               FAKE_SLURM_DIR=str(state), OMP_NUM_THREADS="1", LC_ALL="C.UTF-8")
    return env


def run_on_fake_slurm(folder, repo, *extra, fail=None):
    env = slurm_env(folder / "slurm")
    if fail:
        env["FAKE_SLURM_FAIL"] = fail
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(repo / "profiles" / "slurm"), "-s", str(repo / "Snakefile"),
         "--configfile", "config.yaml", "--directory", str(folder), "--slurm-init-seconds-before-status-checks", "1",
         *extra],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )


def calls(folder, tool):
    lines = (folder / "slurm" / "calls.jsonl").read_text(encoding="utf-8").splitlines()
    return [c for c in map(json.loads, lines) if c["tool"] == tool]


def options(argv):
    """sbatch/srun arguments as {option: value}: ``--x=v``, ``--x v``, ``-x v``."""
    out, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            out[key], i = value, i + 1
        elif arg.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-") and arg not in ("--parsable",):
            out[arg], i = argv[i + 1], i + 2
        else:
            out[arg], i = "", i + 1
    return out


def submissions(folder):
    """{rule: [sbatch options of each submission]} from the fake's record."""
    out = {}
    for call in calls(folder, "sbatch"):
        opts = options(call["argv"])
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", opts["--comment"]).group(1)
        out.setdefault(rule, []).append({**opts, "job_id": call["job_id"]})
    return out


def tiny_config(folder, shards=2):
    tiny_cohort(folder / "raw")
    config = {
        "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                              "clinical": {}, "clinical_sentence": "A patient."}},
        "imaging": {"spacing": [8.0, 8.0, 8.0], "size": [64, 64, 32], "workers": 1, "shards": shards,
                    "qc_sample": 2, "encoder": ENCODER},
        "gpu": {"slurm_partition": "gpu", "lock_dir": str(folder / "locks")},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.slow
def test_snakemake_submits_each_step_to_its_partition_and_retries_a_failed_job(tmp_path, repo):
    tiny_config(tmp_path)
    # one encoding shard is enough to see a GPU job (and keeps the test short)
    res = run_on_fake_slurm(tmp_path, repo, "--retries", "1", "results/tiny/features/image_shards/0-of-2/index.parquet",
                            fail="merge_qc:1")
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    assert (tmp_path / "results" / "tiny" / "features" / "image_shards" / "0-of-2" / "pooled.npy").exists()
    subs = submissions(tmp_path)
    assert sorted((r, len(s)) for r, s in subs.items()) == [
        ("encode_images", 1), ("ingest", 1), ("merge_qc", 2), ("preprocess_ct", 2)]
    for rule in ("ingest", "preprocess_ct", "merge_qc"):  # the profile's CPU defaults
        for s in subs[rule]:
            assert (s["-p"], s["-t"], s["--mem"], s["--cpus-per-task"], s["--ntasks"]) == ("cpu", "120", "16000", "4", "1")
            assert "--gpus" not in s
    for s in subs["encode_images"]:  # a GPU step: ctsurv.gpu.step_resources(1, cpus_per_task=16)
        assert (s["-p"], s["--gpus"], s["--mem"], s["-t"], s["--cpus-per-task"]) == ("gpu", "1", "64000", "720", "16")
    # the failed first attempt of merge_qc was resubmitted (Snakemake's retries) and then ran
    states = {j["id"]: j["state"] for j in map(json.loads, (p.read_text() for p in (tmp_path / "slurm" / "jobs").glob("*.json")))}
    assert [states[s["job_id"]] for s in subs["merge_qc"]] == ["FAILED", "COMPLETED"]
    # inside each job the jobstep executor starts one task with srun, holding the job's GPUs
    steps = {c["job_id"]: options(c["argv"]) for c in calls(tmp_path, "srun")}
    for s in subs["encode_images"]:
        assert steps[s["job_id"]]["-n1"] == "" and steps[s["job_id"]]["--gpus"] == "1"
    assert "--gpus" not in steps[subs["ingest"][0]["job_id"]]
    job = subs["encode_images"][0]["job_id"]  # the GPU slot is taken from SLURM's device list, in the job's own lock folder
    assert [p.name for p in (tmp_path / "locks").iterdir()] == [f"slurm-{job}"]


@pytest.mark.slow
def test_a_job_slurm_reports_failed_stops_the_run_with_the_reason(tmp_path, repo):
    tiny_config(tmp_path)
    res = run_on_fake_slurm(tmp_path, repo, "results/tiny/cohort.parquet", fail="ingest:9")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "Error in rule ingest" in out and "SLURM status is: 'FAILED'" in out and "NodeFail" in out
    assert len(submissions(tmp_path)["ingest"]) == 1  # no retries asked for: reported, not resubmitted


def planned_jobs(folder, repo, configfiles):
    """(rule, threads, resources) of every job of a dry run under the SLURM profile."""
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(repo / "profiles" / "slurm"), "-s", str(repo / "Snakefile"),
         *sum((["--configfile", str(c)] for c in configfiles), []), "--directory", str(folder)],
        cwd=folder, env=slurm_env(folder / "slurm"), capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    jobs = []
    for block in re.findall(r"\nrule (\w+):\n(.*?)(?=\n\n)", res.stdout + "\n\n", re.S):
        rule, body = block
        threads = int(re.search(r"threads: (\d+)", body).group(1)) if "threads:" in body else 1
        line = re.search(r"resources: (.*)", body).group(1)
        resources = {}
        for item in line.split(", "):
            key, value = item.split("=", 1)
            resources[key] = int(value) if value.lstrip("-").isdigit() else value
        jobs.append((rule, threads, resources))
    return jobs


def plugin_submit_string(rule, threads, resources):
    """The sbatch call snakemake-executor-plugin-slurm builds for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(name=rule, threads=threads, resources=Resources(resources))
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": f"rule_{rule}", "account": "",
              "partition": f"-p {resources.get('slurm_partition', 'cpu')}", "workdir": "/work"}
    call = get_submit_command(job, params, settings=None) + set_gres_string(job)
    return options(shlex.split(call)[1:])


@pytest.mark.slow
def test_every_demo_rule_gets_the_partition_gpus_memory_time_and_cpus_it_needs(tmp_path, repo):
    (tmp_path / "config").symlink_to(repo / "config")
    two_gpus = tmp_path / "two_gpus.yaml"
    two_gpus.write_text(yaml.safe_dump({"vlm": {"stage1": {"gpus": 2}}}), encoding="utf-8")
    jobs = planned_jobs(tmp_path, repo, [repo / "config" / "config.yaml", two_gpus])
    gpu_rules = {"encode_images", "train_stage1", "train_stage2", "predict_stage2"}
    seen = set()
    for rule, threads, resources in jobs:
        sbatch = plugin_submit_string(rule, threads, resources)
        seen.add(rule)
        if rule in gpu_rules:
            gpus = "2" if rule == "train_stage1" else "1"
            assert (sbatch["-p"], sbatch.get("--gpus")) == ("gpu", gpus), rule
            assert int(sbatch["--mem"]) >= 32000 and int(sbatch["-t"]) >= 240 and int(sbatch["--cpus-per-task"]) >= 8, rule
            assert "--ntasks" not in sbatch, rule  # one task: accelerate launch starts the processes
        else:
            assert (sbatch["-p"], sbatch.get("--gpus")) == ("cpu", None), rule
            assert (sbatch["--mem"], sbatch["-t"], sbatch["--ntasks"]) == ("16000", "120", "1"), rule
            assert int(sbatch["--cpus-per-task"]) >= threads, rule
    assert gpu_rules <= seen and {"ingest", "preprocess_ct", "extract_answers", "train_baseline"} <= seen


def test_two_gpu_stage1_is_one_accelerate_launch_with_two_processes(tmp_path, monkeypatch):
    """Under SLURM the job holds 2 GPUs (CUDA_VISIBLE_DEVICES=0,1 in one srun task): stage 1
    takes both slots and runs one accelerate launch of 2 processes."""
    from ctsurv.gpu import gpu_slots
    from ctsurv.vlm.stage1 import Stage1Data, launch_command

    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("CTSURV_FAKE_GPUS", raising=False)
    with gpu_slots(2, lock_dir=str(tmp_path / "locks"), allow_cpu=True) as devices:
        assert devices == ["0", "1"]
        cmd = launch_command([Stage1Data("i", "f")], "dec", "out", "vlm.json", len(devices), None)
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "2"]
    assert list((tmp_path / "locks").glob("slurm-1234/*"))
