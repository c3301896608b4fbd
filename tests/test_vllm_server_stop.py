"""The vLLM server never outlives its job: the whole process group is stopped, also when the
API process already exited and when the job itself receives SIGTERM (issue 12, item 6).

The fake `vllm` is a shell script that starts a child (as vLLM's engine workers are) and
then becomes the replay server (tests/replay_server.py).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ctsurv.extraction.vllm_server import VllmServer

REPLAY = Path(__file__).with_name("replay_server.py")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")


def fake_vllm_with_child(folder: Path) -> Path:
    """`vllm` that starts a long-lived child (its pid in folder/child.pid), then serves."""
    exe = folder / "bin" / "vllm"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(
        f'#!/bin/sh\nsleep 300 &\necho $! > "{folder}/child.pid"\nexec "{sys.executable}" "{REPLAY}" "$@"\n',
        encoding="utf-8",
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def alive(pid: int) -> bool:
    """Running (a zombie, i.e. dead but not yet reaped by its parent, is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def wait_dead(pid: int, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def test_stop_reaches_the_servers_children(tmp_path):
    exe = fake_vllm_with_child(tmp_path)
    server = VllmServer("m", tmp_path / "vllm.log", executable=str(exe), startup_timeout_s=30, stop_timeout_s=5)
    try:
        with server:
            child = int(wait_for_file(tmp_path / "child.pid"))
            assert alive(child)
        assert wait_dead(child)
        assert server.process.poll() is not None
    finally:
        kill_group(server.process.pid)


def test_stop_after_the_api_process_exited_still_stops_its_children(tmp_path):
    exe = fake_vllm_with_child(tmp_path)
    server = VllmServer("m", tmp_path / "vllm.log", executable=str(exe), startup_timeout_s=30, stop_timeout_s=5)
    server.start()
    try:
        child = int(wait_for_file(tmp_path / "child.pid"))
        os.kill(server.process.pid, signal.SIGKILL)  # the API process dies, its engine child lives on
        server.process.wait(10)
        assert alive(child)
        server.stop()
        assert wait_dead(child, timeout=2)
    finally:
        kill_group(server.process.pid)


def test_sigterm_to_the_job_stops_the_server_group(tmp_path):
    """Snakemake or `kill` cancels the job: the server and its children go too."""
    exe = fake_vllm_with_child(tmp_path)
    code = textwrap.dedent(
        f"""
        import time
        from ctsurv.extraction.vllm_server import VllmServer
        with VllmServer("m", {str(tmp_path / 'vllm.log')!r}, executable={str(exe)!r},
                        startup_timeout_s=30, stop_timeout_s=5) as server:
            open({str(tmp_path / 'api.pid')!r}, "w").write(str(server.process.pid))
            time.sleep(300)
        """
    )
    job = subprocess.Popen([sys.executable, "-c", code])
    api = None
    try:
        api = int(wait_for_file(tmp_path / "api.pid"))
        child = int(wait_for_file(tmp_path / "child.pid"))
        job.send_signal(signal.SIGTERM)
        assert job.wait(30) == 128 + signal.SIGTERM  # exits as a SIGTERM'd job, after cleaning up
        assert wait_dead(api, timeout=2) and wait_dead(child, timeout=2)
    finally:
        job.kill()
        job.wait()
        if api is not None:
            kill_group(api)
