"""benchmarks/bench_stage1_gpu.py --cpu-smoke: the GPU benchmark's code path on tiny shapes."""

from __future__ import annotations

import re
import runpy

import pytest


def test_gpu_benchmark_cpu_smoke(repo, capsys):
    bench = runpy.run_path(str(repo / "benchmarks" / "bench_stage1_gpu.py"))
    assert bench["main"](["--cpu-smoke"]) == 0
    out = capsys.readouterr().out
    tokens_per_s = float(re.search(r"(\d+) tokens/s", out).group(1))
    patients_per_s = float(re.search(r"([\d.]+) patients/s", out).group(1))
    assert tokens_per_s > 0 and patients_per_s > 0
    assert "batch 2 x (4 visual + 16 text) tokens" in out and "2 patients x 6 answers" in out
    assert "MFU: n/a" in out  # no peak for a CPU unless given


def test_model_flops_count_the_7b_shape(repo):
    bench = runpy.run_path(str(repo / "benchmarks" / "bench_stage1_gpu.py"))
    s = bench["SEVEN_B"]
    per_token = bench["model_flops_per_token"](s, 177)
    # LLaMA-2-7B: 6.48 B weights in the decoder layers + 0.13 B LM head (+ 8 M for W)
    assert per_token / 6 == pytest.approx(6.62e9 + 2 * 32 * 4096 * 177, rel=0.01)
