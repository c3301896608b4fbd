"""GPU slots: give concurrent jobs on one machine distinct CUDA devices.

Snakemake counts ``resources: gpu=N`` but does not say *which* devices a job may use, so two
jobs started under ``--resources gpu=2`` would both see every GPU and pick device 0.  Every
GPU step in ctsurv runs inside :func:`gpu_slots`, which takes an exclusive ``flock`` on one
lock file per device (``<lock_dir>/gpu-<id>.lock``), so jobs on the same machine get
disjoint devices, and sets ``CUDA_VISIBLE_DEVICES`` to the devices it holds.  The kernel drops
the locks when the process ends, so a killed job never leaves a slot taken.

Under SLURM the devices are those of the allocation (``CUDA_VISIBLE_DEVICES`` set by SLURM),
and the locks are still taken: several jobs may run inside one allocation (``snakemake
--resources gpu=4`` inside one ``salloc``) and must not all take its first GPU.  The lock
files then live in ``<lock_dir>/slurm-<SLURM_JOB_ID>/``: SLURM may renumber each
allocation's devices from 0, so two allocations on one node must not share lock files.

Device discovery, in order: ``CTSURV_FAKE_GPUS`` (an integer, for tests and dry runs on
machines without GPUs), ``CUDA_VISIBLE_DEVICES``, ``nvidia-smi -L``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping

from .errors import CtsurvError

log = logging.getLogger(__name__)


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"ctsurv-gpu-slots-{os.getuid()}"


def visible_devices(env: Mapping[str, str] | None = None) -> list[str]:
    """Device ids this process may use (strings, as CUDA_VISIBLE_DEVICES holds them)."""
    env = os.environ if env is None else env
    fake = env.get("CTSURV_FAKE_GPUS")
    if fake:
        try:
            return [str(i) for i in range(int(fake))]
        except ValueError:
            raise CtsurvError(f"CTSURV_FAKE_GPUS must be an integer, got '{fake}'") from None
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [d.strip() for d in cvd.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
        except (subprocess.SubprocessError, OSError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def in_slurm_allocation(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return "SLURM_JOB_ID" in env and "CUDA_VISIBLE_DEVICES" in env


@contextlib.contextmanager
def gpu_slots(
    n: int,
    lock_dir: str | Path | None = None,
    timeout: float | None = None,
    poll: float = 0.5,
    allow_cpu: bool = False,
) -> Iterator[list[str]]:
    """Hold ``n`` distinct GPUs for the duration of the block.

    Yields the held device ids and sets ``CUDA_VISIBLE_DEVICES`` to them (restored after).
    With no GPU on the machine, yields ``[]`` when ``allow_cpu`` (the step then runs on the
    CPU) and raises otherwise.  Waits up to ``timeout`` seconds (forever when ``None``) for
    devices held by other jobs to come free.

    Raises:
        CtsurvError: ``lock_dir`` is a file (checked on every machine, with or without GPUs).
    """
    if lock_dir and Path(lock_dir).exists() and not Path(lock_dir).is_dir():
        raise CtsurvError(f"GPU lock folder {lock_dir} is a file; give a folder for the lock files (--lock-dir, config "
                          "gpu.lock_dir; created when absent)")
    if n <= 0:
        yield []
        return
    devices = visible_devices()
    if not devices:
        if allow_cpu:
            log.info("no GPU visible; running on the CPU")
            yield []
            return
        raise CtsurvError(f"this step needs {n} GPU(s) but none is visible (CUDA_VISIBLE_DEVICES, nvidia-smi)")
    if len(devices) < n:
        raise CtsurvError(f"this step needs {n} GPU(s) but only {len(devices)} are visible: {','.join(devices)}")
    lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
    if in_slurm_allocation():
        lock_dir = lock_dir / f"slurm-{os.environ['SLURM_JOB_ID']}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        held = _try_lock(devices, n, lock_dir)
        if held is not None:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CtsurvError(
                f"no {n} free GPU(s) among {','.join(devices)} after {timeout:.0f} s; other jobs hold the locks in {lock_dir}"
            )
        time.sleep(poll)
    chosen = [d for d, _ in held]
    try:
        with _visible(chosen):
            log.info("GPU slot: using CUDA devices %s", ",".join(chosen))
            yield chosen
    finally:
        for _, fd in held:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _try_lock(devices: list[str], n: int, lock_dir: Path) -> list[tuple[str, int]] | None:
    held: list[tuple[str, int]] = []
    for dev in devices:
        fd = os.open(lock_dir / f"gpu-{dev}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append((dev, fd))
        if len(held) == n:
            return held
    for _, fd in held:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return None


@contextlib.contextmanager
def _visible(devices: list[str]) -> Iterator[None]:
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def step_resources(gpus: int, gpu_partition: str, mem_mb: int = 64000, runtime: int = 720,
                   cpus_per_task: int = 8) -> dict[str, int | str]:
    """Snakemake ``resources`` of a workflow step from the GPUs it needs.

    A step without a GPU gets ``{"gpu": 0}`` and so the cluster profile's defaults (CPU
    partition, 16 GB, 2 h in ``profiles/slurm``): e.g. extract_answers with the rules
    backend.  A GPU step goes to ``gpu_partition`` with the memory (MB), run time (minutes)
    and CPUs of a model-serving or encoding job.  The profile then stays generic: it names
    no rule, and a step's partition follows the config (the backend) rather than the rule name.
    """
    if gpus <= 0:
        return {"gpu": 0}
    return {"gpu": int(gpus), "slurm_partition": gpu_partition, "mem_mb": int(mem_mb), "runtime": int(runtime),
            "cpus_per_task": int(cpus_per_task)}
