"""benchmarks/gpu_check.sh --cpu-smoke: the prepared GPU check runs every section's code path and writes one JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_gpu_check_cpu_smoke_writes_one_json_of_every_section(repo, tmp_path):
    out = tmp_path / "check" / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    env.pop("CTSURV_VLLM", None)
    env.pop("CTSURV_VLLM_MODEL", None)
    run = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["device"] == "cpu" and report["cpu_smoke"] is True
    sections = report["sections"]
    assert [sections[k]["rc"] for k in ("encoder", "stage1", "stage2")] == [0, 0, 0]
    assert "every code path ran" in "\n".join(sections["encoder"]["log_tail"])
    for stage in ("stage1", "stage2"):
        figures = sections[stage]["figures"]
        assert figures["gradient_checkpointing"] is True and figures["tokens_per_s"] > 0, stage
    assert sections["stage2"]["figures"]["through"] == "ctsurv.vlm.trainer.train"
    assert sections["stage1"]["figures"]["through"] == "ctsurv.vlm.trainer.train"
    assert sections["extraction"]["skipped"].startswith("skipped: no vLLM executable")


def test_gpu_check_refuses_an_unknown_argument(repo, tmp_path):
    run = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "--gpus", "2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown argument --gpus" in run.stderr
