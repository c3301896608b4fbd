"""Build the extraction backend the ``extraction`` config section asks for.

:func:`make_backend` builds rules, transformers and openai backends (and vllm when ``url``
points at a running server).  :func:`backend_session` also covers vllm without ``url``: it
holds a GPU slot (none for the CPU build, ``extraction.vllm.device: cpu``), starts the vLLM
server on it, yields an openai backend talking to it, and stops the server at the end -- one
server per job.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError
from .base import Backend
from .fingerprint import folder_fingerprint
from .prompt import PROMPT_VERSION

BACKENDS = ("rules", "transformers", "openai", "vllm")


def _openai(cfg: dict, url: str, model: str | None) -> Backend:
    from .openai_client import OpenAIBackend

    return OpenAIBackend(
        url,
        model,
        max_tokens=cfg.get("max_tokens", 512),
        concurrency=cfg.get("concurrency", 16),
        timeout_s=cfg.get("timeout_s", 120.0),
        retries=cfg.get("retries", 2),
        prompt_version=cfg.get("prompt_version", PROMPT_VERSION),
    )


def make_backend(cfg: dict) -> Backend:
    """The backend of an ``extraction`` config section.

    Args:
        cfg: ``config["extraction"]`` (keys ``backend``, ``model``, ``url``, ``max_tokens``,
            ``concurrency``, ``timeout_s``, ``retries``, ``prompt_version``, ``device``,
            ``gguf_file``; for transformers, ``concurrency`` is the generation batch).

    Raises:
        ConfigError: an unknown backend, a missing model or URL.
    """
    kind = cfg.get("backend", "rules")
    if kind == "rules":
        from .rules import RulesBackend

        return RulesBackend()
    if kind == "transformers":
        from .transformers_backend import TransformersBackend

        if not cfg.get("model"):
            raise ConfigError("extraction.model: the transformers backend needs a local model folder")
        return TransformersBackend(
            cfg["model"],
            cfg.get("gguf_file"),
            device=cfg.get("device", "cpu"),
            max_new_tokens=cfg.get("max_tokens", 512),
            batch_size=cfg.get("concurrency", 4),
            prompt_version=cfg.get("prompt_version", PROMPT_VERSION),
        )
    if kind in ("openai", "vllm"):
        if not cfg.get("url"):
            hint = " (or use backend_session, which starts vllm serve)" if kind == "vllm" else ""
            raise ConfigError(f"extraction.url: the {kind} backend needs the server's base URL{hint}")
        return _openai(cfg, cfg["url"], cfg.get("model"))
    raise ConfigError(f"extraction.backend: expected one of {BACKENDS}, got {kind!r}")


def needs_gpu(cfg: dict) -> int:
    """GPUs a job of this config holds: 1 to run its own vLLM server (GPU build) or a transformers model on CUDA."""
    if cfg.get("backend") == "vllm" and not cfg.get("url"):
        return 0 if cfg.get("vllm", {}).get("device", "cuda") == "cpu" else 1
    if cfg.get("backend") == "transformers" and cfg.get("device", "cpu") != "cpu":
        return 1
    return 0


@contextlib.contextmanager
def backend_session(cfg: dict, server_log: str | Path, lock_dir: str | Path | None = None) -> Iterator[Backend]:
    """The config's backend for the duration of the block, with a vLLM server when it needs one.

    Args:
        cfg: ``config["extraction"]``.
        server_log: file for the vLLM server's output (vllm without url only).
        lock_dir: GPU slot lock folder (``config["gpu"]["lock_dir"]``).
    """
    from ..gpu import gpu_slots

    n_gpu = needs_gpu(cfg)
    if cfg.get("backend") != "vllm" or cfg.get("url"):
        with gpu_slots(n_gpu, lock_dir=lock_dir, allow_cpu=True):
            yield make_backend(cfg)
        return
    from .vllm_server import VllmServer

    if not cfg.get("model"):
        raise ConfigError("extraction.model: the vllm backend needs a local model folder to serve")
    vllm = cfg.get("vllm", {})
    device = vllm.get("device", "cuda")
    cache_root = vllm.get("cache_root") or (Path(cfg["cache_dir"]) / "vllm" if cfg.get("cache_dir") else None)
    # the CPU build holds no GPU slot; the GPU build never falls back to a CPU
    with gpu_slots(needs_gpu(cfg), lock_dir=lock_dir, allow_cpu=device == "cpu"):
        server = VllmServer(
            cfg["model"],
            server_log,
            port=vllm.get("port"),
            startup_timeout_s=vllm.get("startup_timeout_s", 1200),
            cache_root=cache_root,
            cpu_kvcache_gib=vllm.get("cpu_kvcache_gib", 2),
            executable=vllm.get("executable", "vllm"),
            device=device,
            gpu_memory_utilization=vllm.get("gpu_memory_utilization", 0.9),
            max_model_len=vllm.get("max_model_len"),
            # the server decodes as many sequences together as the client keeps in flight
            max_num_seqs=cfg.get("concurrency", 16),
            extra_args=vllm.get("extra_args", []),
        )
        with server:
            backend = _openai(cfg, server.url, server.served_model_name)
            # the served name is the folder's name: key the answer cache on its weights instead
            backend.fingerprint = "folder:" + folder_fingerprint(cfg["model"])
            yield backend
