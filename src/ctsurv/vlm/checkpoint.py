"""Training checkpoints that survive ``kill -9`` and resume the same loss curve.

A checkpoint is one folder, ``<out>/checkpoints/step-000120/``::

    trainable.safetensors   every parameter with requires_grad (names of the unwrapped model),
                            plus the buffers a module lists in ``checkpoint_buffers``
                            (state set during training that is not a parameter, e.g. stage 2's
                            standardiser, fitted before the first step and never on resume)
    optimizer.pt            AdamW state (torch.save; read back with weights_only=True)
    scheduler.pt            learning-rate schedule state
    rng-<rank>.pt           Python, NumPy, torch CPU and CUDA generator states of each process
    state.json              step (the data position follows from it), best validation loss,
                            evaluations without improvement, the run configuration and its
                            fingerprint

Only trainable state is stored (a LoRA run's checkpoint is megabytes, not the 13 GB of a 7B
decoder): the frozen weights are rebuilt from their source folder by the caller.  Sharded runs
(FSDP, DeepSpeed ZeRO-3) keep model and optimizer shards through ``accelerator.save_state``
in the same folder instead.

The folder is written under a hidden temporary name and renamed when complete, and the
``latest`` pointer is replaced atomically (:mod:`ctsurv.atomic`), so a kill at any moment
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write
from ..errors import CtsurvError

LATEST = "latest"


def fingerprint(config: dict) -> str:
    """Stable hash of a JSON-able run configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_diff(old: dict, new: dict, limit: int = 6) -> str:
    """Human-readable list of the keys whose values differ, e.g. ``settings.lr: 0.0001 -> 0.0002``."""
    a, b = _flatten(old), _flatten(new)
    diffs = [f"{k}: {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: json.dumps(d, default=str)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# --------------------------------------------------------------------------- random states


def capture_rng() -> dict:
    state = {
        "python": list(_to_lists(random.getstate())),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


# --------------------------------------------------------------------------- folders


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (None when there is none)."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.exists():
        folder = root / pointer.read_text(encoding="utf-8").strip()
        if (folder / "state.json").exists():
            return folder
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def read_state(folder: str | Path) -> dict:
    with open(Path(folder) / "state.json", encoding="utf-8") as fh:
        return json.load(fh)


def save_checkpoint(root: str | Path, accelerator, model, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    """Write ``step-<state['step']>`` atomically; every process calls this (collective)."""
    root = Path(root)
    name = f"step-{state['step']:06d}"
    final = root / name
    tmp = root / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if is_sharded(accelerator):
        accelerator.save_state(str(tmp))
    elif accelerator.is_main_process:
        save_file(trainable_state(accelerator.unwrap_model(model)), tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        with open(tmp / "state.json", "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=1, default=str)
    torch.save(capture_rng(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write(root / LATEST, lambda fh: fh.write(name.encode("utf-8")))
        others = sorted(p for p in root.glob("step-*") if p.name != name)
        for old in others[: max(0, len(others) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(folder: str | Path, accelerator, model, optimizer, scheduler) -> dict:
    """Restore model trainable state, optimizer, scheduler and this process's random states."""
    folder = Path(folder)
    if is_sharded(accelerator):
        accelerator.load_state(str(folder))
    else:
        load_trainable_state(accelerator.unwrap_model(model), folder / "trainable.safetensors")
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True))
    rng = folder / f"rng-{accelerator.process_index}.pt"
    if not rng.exists():
        raise CtsurvError(f"{folder} holds no random state for process {accelerator.process_index}; "
                          "it was written with fewer processes: resume with the same number of GPUs or --restart")
    restore_rng(torch.load(rng, map_location="cpu", weights_only=True))
    return read_state(folder)


def _checkpointed(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and the buffers named by any submodule's ``checkpoint_buffers``."""
    out = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for prefix, module in model.named_modules():
        for name in getattr(module, "checkpoint_buffers", ()):
            out[f"{prefix}.{name}" if prefix else name] = getattr(module, name)
    return out


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").contiguous() for n, p in _checkpointed(model).items()}


def load_trainable_state(model: torch.nn.Module, file: str | Path) -> None:
    saved = load_file(str(file))
    params = _checkpointed(model)
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        raise CtsurvError(
            f"{file} does not match the model's trainable parameters "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the model was built differently: use --restart"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name].to(param.device, param.dtype))


def is_sharded(accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def full_state_dict(accelerator, model) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on the main process, gathered from the shards.

    Collective: every process must call it.  Returns None when the weights are not sharded
    (each process already holds them all); otherwise the main process gets the full state
    dict on the CPU, keyed as the unwrapped model's ``state_dict()``, and the other processes
    get an empty dict.  FSDP 1 and 2 through ``accelerator.get_state_dict``; DeepSpeed ZeRO-3
    needs ``stage3_gather_16bit_weights_on_model_save: true`` in its config.
    """
    if not is_sharded(accelerator):
        return None
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return {}
    return {k: v.detach().to("cpu") for k, v in state.items() if v is not None}
