"""GPU slots: distinct devices for concurrent jobs, also inside one SLURM allocation (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ctsurv.errors import CtsurvError
from ctsurv.gpu import gpu_slots, visible_devices

PY = sys.executable


@pytest.fixture
def fake2(monkeypatch, tmp_path):
    monkeypatch.setenv("CTSURV_FAKE_GPUS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return tmp_path / "locks"


def _holder(lock_dir: Path, n: int, out: Path, hold: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import os, time
        from ctsurv.gpu import gpu_slots
        with gpu_slots({n}, lock_dir={str(lock_dir)!r}) as devs:
            open({str(out)!r}, "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
            time.sleep({hold})
        """
    )
    return subprocess.Popen([PY, "-c", code])


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text(encoding="utf-8"):
            return path.read_text(encoding="utf-8")
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_concurrent_jobs_get_distinct_devices(fake2, tmp_path):
    a = _holder(fake2, 1, tmp_path / "a", hold=3)
    b = _holder(fake2, 1, tmp_path / "b", hold=3)
    got = {_wait_for(tmp_path / "a"), _wait_for(tmp_path / "b")}
    assert got == {"0", "1"}
    # Both devices are held now: a third job cannot get one within its timeout.
    with pytest.raises(CtsurvError, match="no 1 free GPU"):
        with gpu_slots(1, lock_dir=fake2, timeout=0.3, poll=0.05):
            pass
    assert a.wait(timeout=30) == 0 and b.wait(timeout=30) == 0
    # Released when the holders exit.
    with gpu_slots(2, lock_dir=fake2, timeout=5) as devs:
        assert devs == ["0", "1"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_killed_job_releases_its_device(fake2, tmp_path):
    p = _holder(fake2, 2, tmp_path / "a", hold=60)
    assert _wait_for(tmp_path / "a") == "0,1"
    p.kill()
    p.wait()
    with gpu_slots(1, lock_dir=fake2, timeout=5) as devs:
        assert devs == ["0"]


def test_job_asking_more_devices_than_exist_fails_clearly(fake2):
    with pytest.raises(CtsurvError, match="needs 3 GPU.*only 2 are visible"):
        with gpu_slots(3, lock_dir=fake2):
            pass


def test_slurm_allocation_is_used_as_is(monkeypatch, tmp_path):
    monkeypatch.delenv("CTSURV_FAKE_GPUS", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    lock_dir = tmp_path / "locks"
    with gpu_slots(1, lock_dir=lock_dir) as devs:
        assert devs == ["3"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    # The locks are scoped to the allocation: another job on the node may see its own "3".
    assert [p.name for p in lock_dir.iterdir()] == ["slurm-1234"]


def test_jobs_inside_one_slurm_allocation_get_distinct_devices(monkeypatch, tmp_path):
    """`snakemake --resources gpu=2` inside one salloc: two GPU jobs must not share GPU 3."""
    monkeypatch.delenv("CTSURV_FAKE_GPUS", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    lock_dir = tmp_path / "locks"
    a = _holder(lock_dir, 1, tmp_path / "a", hold=3)
    b = _holder(lock_dir, 1, tmp_path / "b", hold=3)
    assert {_wait_for(tmp_path / "a"), _wait_for(tmp_path / "b")} == {"3", "5"}
    with pytest.raises(CtsurvError, match="no 1 free GPU"):
        with gpu_slots(1, lock_dir=lock_dir, timeout=0.3, poll=0.05):
            pass
    assert a.wait(timeout=30) == 0 and b.wait(timeout=30) == 0
    # A second allocation on the same node has its own lock folder, so it is not blocked
    # by the first one's locks on the (renumbered) device ids.
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    holder = _holder(lock_dir, 2, tmp_path / "c", hold=60)
    try:
        assert _wait_for(tmp_path / "c") == "3,5"
        monkeypatch.setenv("SLURM_JOB_ID", "1234")
        with gpu_slots(2, lock_dir=lock_dir, timeout=5) as devs:
            assert devs == ["3", "5"]
    finally:
        holder.kill()
        holder.wait()


def test_cpu_fallback_and_error_without_gpus(monkeypatch, tmp_path):
    monkeypatch.delenv("CTSURV_FAKE_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_devices() == []
    with gpu_slots(1, lock_dir=tmp_path, allow_cpu=True) as devs:
        assert devs == []
    with pytest.raises(CtsurvError, match="none is visible"):
        with gpu_slots(1, lock_dir=tmp_path):
            pass


def test_bad_fake_count_is_named(monkeypatch):
    monkeypatch.setenv("CTSURV_FAKE_GPUS", "two")
    with pytest.raises(CtsurvError, match="CTSURV_FAKE_GPUS must be an integer"):
        visible_devices()


@pytest.mark.slow
def test_snakemake_gpu_jobs_never_share_a_device(fake2, tmp_path):
    """A real Snakemake run: 4 one-GPU jobs under --resources gpu=2 on 2 fake devices."""
    work = tmp_path / "wf"
    work.mkdir()
    (work / "job.py").write_text(
        "import os, sys, time\n"
        "start = time.time(); time.sleep(1.0)\n"
        "open(sys.argv[1], 'w').write(f\"{os.environ['CUDA_VISIBLE_DEVICES']} {start} {time.time()}\")\n"
    )
    (work / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule all:
                input: expand("out/{{i}}.txt", i=range(4))

            rule gpu_job:
                output: "out/{{i}}.txt"
                resources: gpu=1
                shell: "{PY} -m ctsurv gpu-run --gpus 1 --lock-dir {fake2} -- {PY} job.py {{output}}"
            """
        )
    )
    res = subprocess.run(
        [PY, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2", "--quiet"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = []
    for f in sorted((work / "out").glob("*.txt")):
        dev, start, end = f.read_text(encoding="utf-8").split()
        jobs.append((dev, float(start), float(end)))
    assert len(jobs) == 4
    assert {d for d, _, _ in jobs} == {"0", "1"}
    for i, (d1, s1, e1) in enumerate(jobs):
        for d2, s2, e2 in jobs[i + 1:]:
            if s1 < e2 and s2 < e1:  # ran at the same time
                assert d1 != d2
