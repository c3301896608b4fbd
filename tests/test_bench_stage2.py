"""The stage-2 benchmark scripts run (CPU smoke of the GPU benchmark; per-rule demo times)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage2_gpu_benchmark_cpu_smoke(tmp_path):
    out = tmp_path / "bench.json"
    assert _module("bench_stage2_gpu").main(["--cpu-smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["tokens_per_step"] == 4 * (64 + 32 + 49 - 1)  # batch x merged length
    assert result["tokens_per_s"] > 0 and result["score_patients_per_s"] > 0 and result["generate_patients_per_s"] > 0
    assert 0 < result["trainable"] < result["decoder_params"]  # LoRA + adaptor + head, not the decoder
    assert result["through"] == "ctsurv.vlm.trainer.train" and result["gradient_checkpointing"] is True


def test_demo_times_sums_rules(tmp_path, capsys):
    root = tmp_path / "benchmarks"
    for rule, job, s, cpu in [("a", "x/1", 10.0, 4.0), ("a", "x/2", 5.0, 1.0), ("b", "y", 30.0, 20.0)]:
        path = root / rule / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [s], "h:m:s": ["0"], "max_rss": [100.0], "cpu_time": [cpu]}).to_csv(path, sep="\t", index=False)
    times = _module("demo_times")
    rules = times.per_rule(times.collect(root))
    assert rules.index.tolist() == ["b", "a"]
    assert rules.loc["a", "wall_s"] == pytest.approx(15.0) and rules.loc["a", "cpu_s"] == pytest.approx(5.0)
    assert times.main(["--root", str(root)]) == 0
    assert "3 jobs in 2 rules: 45.0 s wall" in capsys.readouterr().out
