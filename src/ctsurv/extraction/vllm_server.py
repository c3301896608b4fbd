"""Start and stop a ``vllm serve`` process for one GPU job.

vLLM pins its own torch and transformers, so it lives in its own environment
(``envs/vllm.yaml``) and ctsurv only talks to it over HTTP.  :class:`VllmServer` runs the
``vllm`` executable of that environment, bound to 127.0.0.1 on a free port, writes its
output to a log file, waits until ``/health`` answers, and stops the whole process group at
the end.  Run it inside :func:`ctsurv.gpu.gpu_slots` so that it sees only the job's GPU.

An orphaned server keeps its GPU, so the server must never outlive the job: it runs in its
own session (process group) and :meth:`VllmServer.stop` always signals that whole group, even
when the API process has already exited (its engine workers may still be alive), and waits
until no live process is left in it.  While the server runs, a SIGTERM to the job (Snakemake
cancelling it, ``kill``, SLURM's ``scancel``) stops the server and then exits with status
143, as SIGTERM would have; the default handler would skip every ``finally`` and ``with``.

Request logging stays off (vLLM's default since 0.10; older versions log request
prompts unless given ``--disable-log-requests`` via ``extra_args``): prompts hold report text.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, CtsurvError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def resolve_executable(executable: str) -> str:
    """The ``vllm`` program: a name on PATH, a file, or a conda environment folder (``<env>/bin/vllm``)."""
    path = Path(executable).expanduser()
    if path.is_dir():
        candidate = path / "bin" / "vllm"
        if not candidate.is_file():
            raise ConfigError(
                f"extraction.vllm.executable: {path} is a folder without bin/vllm; give the vllm environment "
                "(conda env create -f envs/vllm.yaml -p PATH) or the vllm program itself"
            )
        return str(candidate)
    return str(path) if os.sep in executable else executable


def vllm_command(
    model: str,
    port: int,
    *,
    executable: str = "vllm",
    served_model_name: str | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argument list that starts ``vllm serve`` on loopback.

    Args:
        model: local model folder (no hub downloads at run time).
        port: TCP port on 127.0.0.1.
        executable: the vllm program (see :func:`resolve_executable`).
        served_model_name: name clients send as ``model`` (default: the folder's name).
        gpu_memory_utilization: fraction of the GPU's memory vLLM may take.
        max_model_len: context length (prompt + reply) in tokens; None keeps the model's.
        max_num_seqs: sequences decoded together; the client's concurrency should match it.
        extra_args: further arguments passed as they are (e.g. ``["--dtype", "bfloat16"]``).
    """
    cmd = [
        resolve_executable(executable),
        "serve",
        str(model),
        "--host",
        HOST,
        "--port",
        str(port),
        "--served-model-name",
        served_model_name or Path(str(model).rstrip("/")).name,
        "--gpu-memory-utilization",
        f"{gpu_memory_utilization:g}",
    ]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if max_num_seqs:
        cmd += ["--max-num-seqs", str(max_num_seqs)]
    return cmd + [str(a) for a in extra_args]


def wait_healthy(url: str, process: subprocess.Popen | None, timeout_s: float, poll_s: float = 1.0) -> None:
    """Block until ``GET {url}/health`` answers 200; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise CtsurvError(f"the vLLM server exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise CtsurvError(f"the vLLM server at {url} was not healthy after {timeout_s:.0f} s")
        time.sleep(poll_s)


class VllmServer:
    """``with VllmServer(model, log_file) as server:`` -> ``server.url`` (``http://127.0.0.1:PORT``).

    Args:
        model: local model folder.
        log_file: the server's stdout and stderr go here (appending).
        port: TCP port; None picks a free one.
        startup_timeout_s: seconds allowed for loading the model.
        stop_timeout_s: seconds between SIGTERM and SIGKILL at the end.
        **command_kwargs: passed to :func:`vllm_command`.
    """

    def __init__(
        self,
        model: str,
        log_file: str | Path,
        *,
        port: int | None = None,
        startup_timeout_s: float = 1200.0,
        stop_timeout_s: float = 30.0,
        **command_kwargs,
    ):
        self.port = port or free_port()
        self.command = vllm_command(model, self.port, **command_kwargs)
        self.served_model_name = self.command[self.command.index("--served-model-name") + 1]
        self.log_file = Path(log_file)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self._previous_handler = None

    def start(self) -> "VllmServer":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM on %s (GPUs %s), log %s", self.url, os.environ.get("CUDA_VISIBLE_DEVICES", "-"), self.log_file)
        with open(self.log_file, "ab") as out:
            try:
                # its own session, so that stop() reaches the engine's worker processes too
                self.process = subprocess.Popen(
                    self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
            except FileNotFoundError:
                raise ConfigError(
                    f"cannot run '{self.command[0]}': set extraction.vllm.executable to the vllm program or to "
                    "the environment made from envs/vllm.yaml"
                ) from None
        self._install_signal_handler()
        started = time.monotonic()
        try:
            wait_healthy(self.url, self.process, self.startup_timeout_s)
        except CtsurvError as err:
            self.stop()
            raise CtsurvError(f"{err}; see {self.log_file}") from None
        log.info("vLLM ready after %.0f s", time.monotonic() - started)
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``stop_timeout_s``."""
        self._restore_signal_handler()
        if self.process is None:
            return
        group = self.process.pid  # leader of its own session: its pid is the group id
        if not _signal_group(group, signal.SIGTERM):
            self.process.poll()  # reap the leader if it exited on its own
            return
        deadline = time.monotonic() + self.stop_timeout_s
        while time.monotonic() < deadline:
            self.process.poll()  # the leader is our child: reap it, or it stays a zombie member
            if not _group_alive(group):
                break
            time.sleep(0.1)
        else:
            log.warning("vLLM did not stop within %.0f s of SIGTERM; killing it", self.stop_timeout_s)
            _signal_group(group, signal.SIGKILL)
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("the vLLM process %d did not exit after SIGKILL", group)
        log.info("vLLM stopped")

    def _install_signal_handler(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be set from the main thread; the caller owns signals then
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._previous_handler = signal.SIG_DFL if previous is None else previous  # None: set outside Python

    def _restore_signal_handler(self) -> None:
        previous = self._previous_handler
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        self._previous_handler = None

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("received SIGTERM: stopping the vLLM server")
        self.stop()
        raise SystemExit(128 + signum)

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(group: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user (not vLLM's case): nothing we may stop
        return False
    return True


def _group_alive(group: int) -> bool:
    """Whether any process of the group still runs.

    Zombies count as gone: the engine's workers are re-parented to init once the API process
    exits, and a container's init may never reap them, while ``killpg(group, 0)`` still
    finds them.  Without /proc (not Linux) ``killpg(group, 0)`` is the answer.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return _signal_group(group, 0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        # fields after the command: state, ppid, pgrp, ...
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False
