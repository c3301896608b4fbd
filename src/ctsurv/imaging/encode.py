"""Encode a cohort's preprocessed CT volumes into an image-feature store.

:func:`encode_cohort` runs the image encoder over the preprocessed cache and writes a feature
store (:mod:`ctsurv.features`) with, per study, float16:

* ``pooled`` (N, C): the global average of the layer-4 map (C = 2048 for Merlin);
* ``tokens`` (N, T, C): the visual tokens (see :mod:`ctsurv.imaging.merlin` for their order).

It is resumable: finished batches are saved as shards in a partial folder beside the store
(``.<store>.partial/``), so a killed job picks up where it stopped; the store is assembled and
the partial folder removed at the end.  It is idempotent: a store written by the same encoder
(fingerprint in ``encoder.json``) for the same studies is left as it is.

What "the same" means: the encoder fingerprint covers the architecture, every weight, the
token setting and the *resolved* precision (fp32 or bf16: ``auto`` differs between
machines), so shards of another precision are discarded.  The input side is covered per
study: each shard row carries the study's volume stamp
(:func:`ctsurv.imaging.cache.entry_stamp`: the cache entry's metadata, i.e. its source,
preprocessing settings, cache precision and chain version, and the ``.npy`` file's size and
mtime), and only rows whose stamp matches the volume now in the cache are reused.  So a
killed encode followed by new imaging settings re-encodes the changed volumes instead of
resuming with features of the old ones; the finished store records the stamps' hash.
With a caller's ``loader`` and no ``stamp`` function the volumes have no stamp and rows are
reused by study id.

Speed: bf16 autocast on a GPU (and on a CPU with native bf16, where it halves the time; on a
CPU without it bf16 is emulated and 24x slower, so ``auto`` keeps fp32 there), the model in
channels-last memory format when that is faster, and a DataLoader whose workers read the
next volumes (pinned memory, non-blocking copies) while the GPU encodes the current batch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..errors import DataError
from ..features import FeatureStore, write_features
from .merlin import I3ResNet, token_mode
from .stamps import FINGERPRINT_FILE, cache_stamp, usable_study_ids, volumes_fingerprint  # noqa: F401 (names of this module)

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


class VolumeDataset(Dataset):
    """Volumes by study id, through a loader callable.

    Args:
        study_ids: studies in encoding order.
        loader: ``loader(study_id) -> np.ndarray`` float32, axes (x, y, z).
    """

    def __init__(self, study_ids: Sequence[str], loader: Callable[[str], np.ndarray]):
        self.study_ids = list(study_ids)
        self.loader = loader

    def __len__(self) -> int:
        return len(self.study_ids)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor]:
        sid = self.study_ids[i]
        volume = np.asarray(self.loader(sid), dtype=np.float32)
        if volume.ndim != 3:
            raise DataError(f"study '{sid}': expected a 3D volume (x, y, z), got shape {volume.shape}")
        return sid, torch.from_numpy(np.ascontiguousarray(volume))[None]  # (1, X, Y, Z)


def collate_volumes(items: list[tuple[str, torch.Tensor]]) -> tuple[list[str], torch.Tensor]:
    """Stack (study_id, (1, X, Y, Z)) items into ids and a (B, 1, X, Y, Z) batch."""
    ids = [sid for sid, _ in items]
    shapes = {tuple(v.shape) for _, v in items}
    if len(shapes) > 1:
        first = tuple(items[0][1].shape[1:])
        odd = next(sid for sid, v in items if tuple(v.shape[1:]) != first)
        raise DataError(
            f"study '{odd}' has a different volume size than study '{ids[0]}' ({first}); "
            "re-run preprocess_ct so every volume has the imaging.size grid"
        )
    return ids, torch.stack([v for _, v in items])


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 / AMX), where bf16 is faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device`` (None = fp32).

    ``auto`` is bf16 on a GPU that supports it and on a CPU with native bf16, else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_bf16() else None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def channels_last_is_faster(model: I3ResNet, batch: torch.Tensor, dtype: torch.dtype | None, repeats: int = 3) -> bool:
    """Time the model on ``batch`` in both memory formats (model ends in the faster one)."""
    timings = {}
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        model.to(memory_format=fmt)
        timings[fmt] = _time_forward(model, batch, dtype, repeats)
    faster = timings[torch.channels_last_3d] < timings[torch.contiguous_format]
    model.to(memory_format=torch.channels_last_3d if faster else torch.contiguous_format)
    log.info("forward time: contiguous %.4f s, channels-last %.4f s", timings[torch.contiguous_format], timings[torch.channels_last_3d])
    return faster


def _time_forward(model: I3ResNet, batch: torch.Tensor, dtype: torch.dtype | None, repeats: int) -> float:
    device = batch.device
    with torch.inference_mode(), autocast_context(device, dtype):
        model(batch)  # warm-up (cuDNN algorithm choice)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(batch)
        _sync(device)
    return (time.perf_counter() - start) / repeats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32`` or ``bf16``: the precision the features are computed in."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def encoder_fingerprint(model: I3ResNet, tokens: int, precision: str = "fp32") -> str:
    """A hash of the architecture, every weight, the token setting and the resolved precision."""
    digest = hashlib.sha256(json.dumps({**model.describe(), "tokens": tokens, "precision": precision},
                                       sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _partial_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial"


def _is_up_to_date(out_dir: Path, study_ids: list[str], fingerprint: str, volumes: str) -> bool:
    meta = out_dir / FINGERPRINT_FILE
    if not meta.exists() or not (out_dir / "index.parquet").exists():
        return False
    try:
        stored = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = stored.get("fingerprint") == fingerprint and stored.get("volumes") == volumes
    return same and FeatureStore(out_dir).study_ids == study_ids


def _shard_rows(data) -> tuple[list[str], list[str]]:
    """(study ids, volume stamps) of a shard; shards from before stamps existed have none."""
    ids = data["study_ids"].tolist()
    stamps = data["stamps"].tolist() if "stamps" in data.files else [None] * len(ids)
    return ids, stamps


def _open_partial(partial: Path, fingerprint: str, stamps: dict[str, str]) -> set[str]:
    """Studies finished in the partial folder from their current volume; reset the folder if
    another encoder (or precision) made it."""
    meta = partial / FINGERPRINT_FILE
    if partial.exists():
        try:
            same = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            log.info("discarding partial results in %s (made by another encoder)", partial)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not meta.exists():
        atomic_write(meta, lambda fh: fh.write(json.dumps({"fingerprint": fingerprint}).encode()))
    done: set[str] = set()
    for shard in sorted(partial.glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:  # npz members load lazily
            ids, shard_stamps = _shard_rows(data)
            done.update(s for s, st in zip(ids, shard_stamps) if s in stamps and st == stamps[s])
    return done


def _assemble(partial: Path, study_ids: list[str], stamps: dict[str, str]) -> dict[str, np.ndarray]:
    """Gather the shards into memory-mapped (N, ...) float16 arrays in ``study_ids`` order.

    The arrays live in the partial folder, so memory use stays at one shard however large
    the cohort (490 tokens x 2048 x 50,000 studies is 100 GB).
    """
    row = {s: i for i, s in enumerate(study_ids)}
    arrays: dict[str, np.ndarray] = {}
    for shard in sorted(partial.glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            ids, shard_stamps = _shard_rows(data)
            # rows of an older volume of the study are skipped: a later shard holds its new features
            keep = [i for i, s in enumerate(ids) if s in row and shard_stamps[i] == stamps[s]]
            if not keep:
                continue
            rows = [row[ids[i]] for i in keep]
            for name in ("pooled", "tokens"):
                values = data[name]
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(
                        partial / f"assembled-{name}.npy", mode="w+", dtype=np.float16,
                        shape=(len(study_ids), *values.shape[1:]))
                arrays[name][rows] = values[keep]
    return arrays


def encode_cohort(
    study_ids: Sequence[str],
    cache_dir: str | Path | None,
    out_dir: str | Path,
    model: I3ResNet,
    tokens: int = 49,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    precision: str = "auto",
    channels_last: bool | str = "auto",
    num_workers: int | None = None,
    loader: Callable[[str], np.ndarray] | None = None,
    stamp: Callable[[str], str] | None = None,
) -> Path:
    """Encode the studies' preprocessed volumes into the feature store ``out_dir``.

    Args:
        study_ids: studies to encode (store order).
        cache_dir: preprocessed cache (``results/{dataset}/ct``), read with
            :func:`ctsurv.imaging.cache.load_preprocessed`; unused when ``loader`` is given.
        out_dir: the feature store folder (``results/{dataset}/features/image``).
        model: the image encoder (:func:`ctsurv.imaging.merlin.build_encoder`).
        tokens: 49 (mean over the out-of-plane axis) or 490 (every layer-4 position).
        batch_size: volumes per forward pass.
        device: "cuda", "cpu", ... (default: cuda when available).
        precision: "auto", "fp32" or "bf16" (see :func:`resolve_precision`).
        channels_last: True, False or "auto" (both formats timed on the first batch).
        num_workers: DataLoader processes reading volumes (default 2 on a GPU, 0 on a CPU,
            where the encoder already uses every core).
        loader: ``loader(study_id) -> (x, y, z) float32`` instead of the cache.
        stamp: ``stamp(study_id) -> str`` that changes whenever the study's volume does
            (default with the cache: :func:`ctsurv.imaging.cache.entry_stamp`; with a
            ``loader`` and no ``stamp``: none, rows are reused by id).

    Returns:
        ``out_dir``, a store with ``pooled`` (N, C) and ``tokens`` (N, T, C), float16.
    """
    out_dir = Path(out_dir)
    study_ids = [str(s) for s in study_ids]
    if len(set(study_ids)) != len(study_ids):
        raise DataError(f"{out_dir}: the study list has duplicate ids")
    if not study_ids:
        raise DataError(f"{out_dir}: no studies to encode (is the preprocessed cache {cache_dir} empty?)")
    mode = token_mode(tokens)
    if loader is None:
        if cache_dir is None:
            raise ValueError("encode_cohort needs cache_dir or loader")
        from . import cache

        loader = _CacheLoader(Path(cache_dir), cache.load_preprocessed)
        if stamp is None:
            stamp = functools.partial(cache_stamp, Path(cache_dir))
    stamps = {s: (stamp(s) if stamp is not None else "") for s in study_ids}

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_precision(precision, device)
    fingerprint = encoder_fingerprint(model, tokens, precision_name(dtype))
    volumes = volumes_fingerprint(study_ids, stamps)
    if _is_up_to_date(out_dir, study_ids, fingerprint, volumes):
        log.info("%s is up to date (%d studies, same encoder, precision and volumes)", out_dir, len(study_ids))
        return out_dir

    partial = _partial_dir(out_dir)
    done = _open_partial(partial, fingerprint, stamps)
    todo = [s for s in study_ids if s not in done]
    log.info("encoding %d studies (%d already in %s)", len(todo), len(study_ids) - len(todo), partial)
    if todo:
        _encode_into_shards(todo, loader, partial, model, mode, batch_size, device, dtype, channels_last,
                            num_workers, stamps)

    arrays = _assemble(partial, study_ids, stamps)
    write_features(out_dir, study_ids, arrays)
    shapes = {name: tuple(a.shape) for name, a in arrays.items()}
    del arrays  # close the memory maps before their folder goes
    # The fingerprint is written last: a store without it is never taken as up to date.
    meta = {"fingerprint": fingerprint, "volumes": volumes, **model.describe(), "tokens": tokens, "token_mode": mode,
            "n_tokens": shapes["tokens"][1], "precision": precision_name(dtype)}
    atomic_write(out_dir / FINGERPRINT_FILE, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    shutil.rmtree(partial, ignore_errors=True)
    log.info("wrote %s: pooled %s, tokens %s", out_dir, shapes["pooled"], shapes["tokens"])
    return out_dir


class _CacheLoader:
    """Picklable loader for DataLoader workers."""

    def __init__(self, cache_dir: Path, load: Callable[[Path, str], np.ndarray]):
        self.cache_dir = cache_dir
        self.load = load

    def __call__(self, study_id: str) -> np.ndarray:
        return self.load(self.cache_dir, study_id)


def _encode_into_shards(todo, loader, partial, model, mode, batch_size, device, dtype, channels_last,
                        num_workers, stamps) -> None:
    on_gpu = device.type == "cuda"
    if num_workers is None:
        num_workers = 2 if on_gpu else 0
    model = model.to(device).eval()
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # every batch has the same shape: autotune once
    batches = DataLoader(
        VolumeDataset(todo, loader),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_volumes,
        pin_memory=on_gpu,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    log.info("device %s, precision %s, batch %d, %d loader workers", device, dtype or "fp32", batch_size, num_workers)
    shard_no = _next_shard_number(partial)
    with torch.inference_mode():
        for step, (ids, batch) in enumerate(tqdm(batches, desc="encode images", unit="batch")):
            batch = batch.to(device, non_blocking=on_gpu)
            n = batch.shape[0]
            if n < batch_size:
                # Every forward pass sees a full batch (the last volume repeated): oneDNN picks
                # kernels by batch size, so a study's features would otherwise depend on how
                # many studies share its batch, and a sharded or resumed run would differ from
                # the single run in the last bits.  At full batches they do not (measured).
                batch = torch.cat([batch, batch[-1:].expand(batch_size - n, *batch.shape[1:])])
            if step == 0:
                _choose_memory_format(model, batch, dtype, channels_last, on_gpu)
            with autocast_context(device, dtype):
                pooled, toks = model.encode(batch, mode)
            pooled, toks = pooled[:n], toks[:n]
            # One shard per batch: a killed job loses at most one batch.
            arrays = {"study_ids": np.array(ids, dtype=str),
                      "stamps": np.array([stamps[s] for s in ids], dtype=str),
                      "pooled": pooled.cpu().numpy().astype(np.float16),
                      "tokens": toks.cpu().numpy().astype(np.float16)}
            atomic_write(partial / f"shard-{shard_no:06d}.npz", lambda fh: np.savez(fh, **arrays))
            shard_no += 1
    model.to(memory_format=torch.contiguous_format)


def _next_shard_number(partial: Path) -> int:
    numbers = [int(p.stem.split("-")[1]) for p in partial.glob("shard-*.npz")]
    return max(numbers, default=-1) + 1


def _choose_memory_format(model, batch, dtype, channels_last, on_gpu) -> None:
    if channels_last == "auto":
        # Timed, not guessed: on a 2-core AVX2 CPU channels-last was 1.4x faster (fp32), and
        # on GPUs it depends on cuDNN's kernels for the precision.
        use = channels_last_is_faster(model, batch, dtype, repeats=3 if on_gpu else 1)
    else:
        use = bool(channels_last)
    model.to(memory_format=torch.channels_last_3d if use else torch.contiguous_format)
    log.info("channels-last memory format: %s", "on" if use else "off")


def encode_dataset(qc_table: str | Path, out_dir: str | Path, encoder: dict, lock_dir: str | None = None,
                   shard: tuple[int, int] = (0, 1)) -> Path:
    """Encode every usable study of a preprocessed cache (or of one shard), on a GPU slot when there is one.

    Args:
        qc_table: ``results/{dataset}/ct/qc.parquet``; the cache is its folder.
        out_dir: the store, ``results/{dataset}/features/image`` (a shard's:
            ``results/{dataset}/features/image_shards/{i}-of-{n}``).
        encoder: the config section ``imaging.encoder``.
        lock_dir: GPU lock folder (config ``gpu.lock_dir``).
        shard: ``(i, n)``: encode the studies of shard ``i`` of ``n`` only
            (:func:`ctsurv.shards.shard_of`; joined by :func:`ctsurv.imaging.sharded.merge_feature_shards`).
    """
    from ..gpu import gpu_slots
    from ..shards import shard_members
    from .merlin import build_encoder

    ids = shard_members(usable_study_ids(qc_table), *shard)
    if not ids and shard[1] > 1:
        from .sharded import write_empty_store

        log.info("shard %d of %d holds no usable study", *shard)
        return write_empty_store(out_dir)
    model = build_encoder(encoder["checkpoint"], encoder["layers"], encoder["width"], encoder["seed"])
    with gpu_slots(1, lock_dir=lock_dir, allow_cpu=True) as devices:
        # CUDA_VISIBLE_DEVICES now names our slot only, so "cuda" is that device.
        on_gpu = bool(devices) and torch.cuda.is_available()
        return encode_cohort(
            ids, Path(qc_table).parent, out_dir, model,
            tokens=encoder["tokens"], batch_size=encoder["batch_size"],
            device="cuda" if on_gpu else "cpu", precision=encoder["precision"],
            channels_last=encoder["channels_last"], num_workers=encoder["workers"] if on_gpu else 0,
        )
