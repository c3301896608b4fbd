"""The vLLM server's command, environment, life cycle and backend_session, with a fake vllm program.

The fake program is tests/replay_server.py behind a shell script named `vllm` (or `python` in
a fake environment folder): it accepts the `vllm serve MODEL --host --port ...` and the
`python -m vllm.entrypoints.openai.api_server --model MODEL ...` forms and serves /health and
chat completions.  tests/test_extraction_vllm_real.py runs the real server (opt-in).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ctsurv.errors import ConfigError, CtsurvError
from ctsurv.extraction.backends import backend_session, make_backend, needs_gpu
from ctsurv.extraction.base import Question
from ctsurv.extraction.vllm_server import (API_SERVER_MODULE, HOST, VllmServer, free_port, server_environment,
                                           server_prefix, vllm_command)

REPLAY = Path(__file__).with_name("replay_server.py")
QUESTIONS = [Question("pleura", "Is there pleural involvement?"), Question("bones", "Bone changes?")]


def fake_vllm(folder: Path, body: str | None = None, name: str = "vllm") -> Path:
    """An executable `name` in folder/bin that records its arguments and environment and runs the replay server."""
    exe = folder / "bin" / name
    exe.parent.mkdir(parents=True, exist_ok=True)
    body = body or f'exec "{sys.executable}" "{REPLAY}" "$@"'
    exe.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args.txt"\necho "CUDA=$CUDA_VISIBLE_DEVICES" >> "{folder}/args.txt"\n'
                   f'echo "OFFLINE=$HF_HUB_OFFLINE KV=$VLLM_CPU_KVCACHE_SPACE CACHE=$VLLM_CACHE_ROOT" >> "{folder}/args.txt"\n{body}\n', encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_vllm_command_binds_loopback_and_passes_the_settings():
    cmd = vllm_command(
        "/models/Mistral-7B-Instruct-v0.2/",
        8123,
        gpu_memory_utilization=0.85,
        max_model_len=8192,
        max_num_seqs=32,
        extra_args=["--dtype", "bfloat16"],
    )
    assert cmd == [
        "vllm", "serve", "/models/Mistral-7B-Instruct-v0.2/",
        "--host", "127.0.0.1", "--port", "8123",
        "--served-model-name", "Mistral-7B-Instruct-v0.2",
        "--gpu-memory-utilization", "0.85",
        "--max-model-len", "8192",
        "--max-num-seqs", "32",
        "--dtype", "bfloat16",
    ]  # fmt: skip
    minimal = vllm_command("m", 1, served_model_name="mistral", max_model_len=None)
    assert "--max-model-len" not in minimal and "--max-num-seqs" not in minimal
    assert minimal[minimal.index("--served-model-name") + 1] == "mistral"


def test_an_environment_folder_or_python_runs_the_api_server_module(tmp_path):
    python = fake_vllm(tmp_path / "env", name="python")
    module = ["-m", API_SERVER_MODULE, "--model", "/m"]
    # the CPU build's `vllm` program fails on its package name; the module works in both builds
    assert server_prefix(str(tmp_path / "env"), "/m") == [str(python)] + module
    assert server_prefix(str(python), "/m") == [str(python)] + module
    assert server_prefix("python3", "/m") == ["python3"] + module
    assert server_prefix("vllm", "/m") == ["vllm", "serve", "/m"]  # a name is looked up on PATH at start
    assert vllm_command("/m", 1, executable=str(tmp_path / "env"))[:5] == [str(python)] + module
    with pytest.raises(ConfigError, match="without bin/python"):
        server_prefix(str(tmp_path), "/m")


def test_cpu_device_drops_the_gpu_flag_and_sets_the_cpu_environment(tmp_path):
    cpu = vllm_command("/m", 1, device="cpu", max_model_len=2048)
    assert "--gpu-memory-utilization" not in cpu and cpu[cpu.index("--max-model-len") + 1] == "2048"
    assert "--gpu-memory-utilization" in vllm_command("/m", 1)
    with pytest.raises(ConfigError, match="extraction.vllm.device"):
        vllm_command("/m", 1, device="tpu")
    env = server_environment("cpu", tmp_path / "cache", 3, base={"PATH": "/bin", "HF_HUB_OFFLINE": "0"})
    assert env == {"PATH": "/bin", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
                   "VLLM_CACHE_ROOT": str((tmp_path / "cache").resolve()), "VLLM_CPU_KVCACHE_SPACE": "3"}
    gpu = server_environment("cuda", None, base={})
    assert "VLLM_CPU_KVCACHE_SPACE" not in gpu and "VLLM_CACHE_ROOT" not in gpu and gpu["HF_HUB_OFFLINE"] == "1"


def test_without_a_port_the_server_gets_a_free_one_in_command_and_url(tmp_path):
    import socket

    with socket.socket() as busy:  # a port someone listens on is never handed out
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picked = {free_port() for _ in range(20)}
        assert taken not in picked
        server = VllmServer("/models/mistral", tmp_path / "vllm.log")
    assert server.port != taken and server.url == f"http://{HOST}:{server.port}"
    assert server.command[server.command.index("--port") + 1] == str(server.port)
    fixed = VllmServer("/models/mistral", tmp_path / "vllm.log", port=8123)
    assert fixed.url.endswith(":8123") and fixed.command[fixed.command.index("--port") + 1] == "8123"


def test_server_starts_waits_for_health_and_stops(tmp_path):
    exe = fake_vllm(tmp_path)
    server = VllmServer("/models/mistral", tmp_path / "vllm.log", executable=str(exe), startup_timeout_s=30)
    with server:
        from urllib.request import urlopen

        with urlopen(server.url + "/v1/models", timeout=5) as r:
            assert json.load(r)["data"][0]["id"] == "mistral"
        pid = server.process.pid
    assert server.process.poll() is not None  # stopped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    args = (tmp_path / "args.txt").read_text(encoding="utf-8").split("\n")[0].split()
    assert args[:2] == ["serve", "/models/mistral"] and args[args.index("--host") + 1] == "127.0.0.1"
    assert (tmp_path / "vllm.log").exists()


def test_server_that_dies_is_reported_with_its_log(tmp_path):
    exe = fake_vllm(tmp_path, body='echo "CUDA out of memory" >&2; exit 3')
    with pytest.raises(CtsurvError, match=r"exited with status 3 before it was ready; see .*vllm.log"):
        VllmServer("m", tmp_path / "vllm.log", executable=str(exe), startup_timeout_s=30).start()
    assert "CUDA out of memory" in (tmp_path / "vllm.log").read_text(encoding="utf-8")


def test_missing_vllm_program_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="extraction.vllm.executable"):
        VllmServer("m", tmp_path / "vllm.log", executable=str(tmp_path / "nope" / "vllm")).start()


def test_backend_session_starts_one_server_on_a_gpu_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("CTSURV_FAKE_GPUS", "2")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    fake_vllm(tmp_path / "env", name="python")
    cfg = {
        "backend": "vllm",
        "model": str(tmp_path / "Mistral-7B"),
        "url": None,
        "concurrency": 3,
        "retries": 0,
        "vllm": {"executable": str(tmp_path / "env"), "startup_timeout_s": 30, "extra_args": ["--seed", "1"]},
    }
    assert needs_gpu(cfg) == 1
    with backend_session(cfg, tmp_path / "vllm.log", lock_dir=tmp_path / "locks") as backend:
        got = backend.extract(["report one"], QUESTIONS)
    assert backend.name == "openai:Mistral-7B"
    assert [a.status for a in got[0]] == ["not_mentioned", "not_mentioned"]
    args, cuda = (tmp_path / "env" / "args.txt").read_text(encoding="utf-8").split("\n")[:2]
    assert cuda == "CUDA=0"  # the server sees only the job's GPU
    assert "--max-num-seqs 3" in args and args.endswith("--seed 1")


def test_backend_choice_and_gpu_needs():
    assert make_backend({"backend": "rules"}).name == "rules"
    with pytest.raises(ConfigError, match="extraction.url"):
        make_backend({"backend": "openai", "url": None})
    with pytest.raises(ConfigError, match="backend_session"):
        make_backend({"backend": "vllm", "url": None})
    with pytest.raises(ConfigError, match="extraction.model"):
        make_backend({"backend": "transformers", "model": None})
    assert needs_gpu({"backend": "vllm", "url": "http://h:8000"}) == 0
    assert needs_gpu({"backend": "transformers", "device": "cuda"}) == 1
    assert needs_gpu({"backend": "transformers", "device": "cpu"}) == 0
    assert needs_gpu({"backend": "rules"}) == 0


def test_backend_session_on_a_cpu_build_holds_no_gpu_and_runs_the_module(tmp_path, monkeypatch):
    monkeypatch.setenv("CTSURV_FAKE_GPUS", "0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    fake_vllm(tmp_path / "env", name="python")
    cfg = {
        "backend": "vllm", "model": str(tmp_path / "SmolLM2"), "url": None, "concurrency": 2, "retries": 0,
        "cache_dir": str(tmp_path / "answers"),
        "vllm": {"executable": str(tmp_path / "env"), "device": "cpu", "cpu_kvcache_gib": 2, "startup_timeout_s": 30,
                 "max_model_len": 2048},
    }
    assert needs_gpu(cfg) == 0
    with backend_session(cfg, tmp_path / "vllm.log", lock_dir=tmp_path / "locks") as backend:
        got = backend.extract(["report one"], QUESTIONS)
    assert backend.name == "openai:SmolLM2" and [a.status for a in got[0]] == ["not_mentioned", "not_mentioned"]
    args, _cuda, env = (tmp_path / "env" / "args.txt").read_text(encoding="utf-8").split("\n")[:3]
    assert args.startswith(f"-m {API_SERVER_MODULE} --model {tmp_path / 'SmolLM2'} --host 127.0.0.1")
    assert "--gpu-memory-utilization" not in args and "--max-model-len 2048" in args
    assert env == f"OFFLINE=1 KV=2 CACHE={(tmp_path / 'answers' / 'vllm').resolve()}"


def test_gguf_to_hf_checks_its_inputs_before_loading(tmp_path, capsys):
    from ctsurv.cli import main

    assert main(["gguf-to-hf", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "hf")]) == 1
    assert "GGUF " + str(tmp_path / "nope.gguf") + ": GGUF file not found" in capsys.readouterr().err
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["gguf-to-hf", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "busy")]) == 1
    assert "not a Hugging Face model folder (no config.json)" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").exists()
    # a file that is not a GGUF model: a DataError naming it, no traceback
    assert main(["gguf-to-hf", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "hf")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "m.gguf") in err and not (tmp_path / "hf").exists()
