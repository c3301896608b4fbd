"""benchmarks/demo_times.py: per-rule sums and the run's timeline from benchmark files."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("demo_times", ROOT / "benchmarks" / "demo_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(root: Path, job: str, seconds: float, cpu: float, end: float) -> None:
    path = root / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n" f"{seconds}\t0:00:00\t100\t{cpu}\n", encoding="utf-8")
    os.utime(path, (end, end))


def test_timeline_finds_the_stretches_where_cores_sat_idle(tmp_path):
    demo_times = _module()
    t = 1_000_000.0
    # 0-100 s: one job alone; 100-150 s: two jobs; 150-170 s: nothing; 170-200 s: one job.
    _bench(tmp_path, "demo_cohort/a", 100, 190, t + 100)
    _bench(tmp_path, "train_baseline/x/m1", 50, 50, t + 150)
    _bench(tmp_path, "train_baseline/x/m2", 50, 50, t + 150)
    _bench(tmp_path, "report/r", 30, 30, t + 200)
    jobs = demo_times.collect(tmp_path)
    assert jobs["start"].min() == pytest.approx(t)
    rules = demo_times.per_rule(jobs)
    assert rules.loc["train_baseline", "jobs"] == 2 and rules.loc["train_baseline", "cpu_s"] == 100
    line = demo_times.timeline(jobs, cores=2, min_gap=10)
    assert line["elapsed_s"] == pytest.approx(200)
    assert line["mean_running"] == pytest.approx((100 + 2 * 50 + 30) / 200)
    assert line["underused_s"] == pytest.approx(150)
    spans = [(round(s["from_s"]), round(s["to_s"]), s["jobs"]) for s in line["stretches"]]
    assert spans == [(0, 100, ("demo_cohort/a",)), (170, 200, ("report/r",)), (150, 170, ())]


def test_main_prints_the_timeline(tmp_path, capsys):
    demo_times = _module()
    _bench(tmp_path, "demo_cohort/a", 100, 190, 1_000_100.0)
    assert demo_times.main(["--root", str(tmp_path), "--cores", "2"]) == 0
    out = capsys.readouterr().out
    assert "100 s elapsed" in out and "demo_cohort/a (1.9 cores)" in out
