"""The preprocessed-CT cache (storage): one ``.npy`` file per study, read by the image encoder.

This module stores and reads entries; :mod:`ctsurv.imaging.cohort_cache` fills the cache
from a cohort table (reading, checking and preprocessing each study, the QC rows).

Layout of ``cache_dir`` (``results/{dataset}/ct/``)::

    volumes/<study>.npy    the preprocessed volume, axes (x, y, z) = (R, A, S)
    volumes/<study>.json   what it was made from: source path, size, mtime and settings
    qc.parquet             one QC row per study (see :mod:`ctsurv.imaging.qc`)
    qc_montage.png         axial / coronal / sagittal views of a sample of studies

Why ``.npy``: it loads with one ``read`` and no decompression (about 10x faster than a
``.nii.gz``) and can be memory-mapped.  Precision (config ``imaging.cache_precision``):

* ``uint16`` (default): the [0, 1] intensities times 65535, rounded; half the size of
  float32 and a maximum error against float32 of 1 / (2 * 65535) = 7.6e-6;
* ``float16``: same size, maximum error 2.4e-4 (half a unit in the last place near 1);
* ``float32``: exact, twice the size.

:func:`load_preprocessed` always returns float32 in [0, 1]; the stored dtype says how to
decode, so caches of different precisions read alike.  Each file is written to a temporary
name and renamed, the ``.npy`` first and its ``.json`` last, so a study is in the cache
only when both exist and a crash never leaves a half-written volume behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from ..atomic import atomic_write
from ..errors import DataError

PRECISIONS = ("uint16", "float16", "float32")
_UINT16_MAX = 65535.0
VOLUMES = "volumes"


def _stem(study_id: str) -> str:
    # Study ids may hold characters a file name cannot (e.g. "/"): percent-encode them.
    return quote(str(study_id), safe="-_.+=@,")


def volume_path(cache_dir: str | Path, study_id: str) -> Path:
    """Path of a study's ``.npy`` file in the cache."""
    return Path(cache_dir) / VOLUMES / f"{_stem(study_id)}.npy"


def _meta_path(cache_dir: str | Path, study_id: str) -> Path:
    return Path(cache_dir) / VOLUMES / f"{_stem(study_id)}.json"


def encode(volume: np.ndarray, precision: str) -> np.ndarray:
    """Convert a float32 volume in [0, 1] to the stored dtype."""
    if precision == "uint16":
        return np.rint(np.clip(volume, 0.0, 1.0) * _UINT16_MAX).astype(np.uint16)
    if precision == "float16":
        return volume.astype(np.float16)
    if precision == "float32":
        return volume.astype(np.float32, copy=False)
    raise ValueError(f"cache precision must be one of {PRECISIONS}, got {precision!r}")


def decode(stored: np.ndarray) -> np.ndarray:
    """Float32 volume in [0, 1] from the stored array (its dtype tells the precision)."""
    if stored.dtype == np.uint16:
        out = stored.astype(np.float32)
        out *= np.float32(1.0 / _UINT16_MAX)
        return out
    return stored.astype(np.float32, copy=False)


def write_entry(cache_dir: str | Path, study_id: str, volume: np.ndarray, key: dict[str, Any],
                precision: str = "uint16", qc: dict[str, Any] | None = None) -> Path:
    """Store one preprocessed volume atomically.

    Args:
        cache_dir: the cache folder.
        study_id: the study's id.
        volume: float32 array in [0, 1], shape (X, Y, Z), axes (R, A, S).
        key: what the volume was made from (source path, size, mtime, settings); a later
            run skips the study when its key is the same.
        precision: one of :data:`PRECISIONS`.
        qc: the study's QC row, kept so that a skipped study still has one.

    Returns:
        The path of the ``.npy`` file.
    """
    stored = encode(volume, precision)
    path = volume_path(cache_dir, study_id)
    atomic_write(path, lambda fh: np.save(fh, stored, allow_pickle=False))
    meta = {"study_id": str(study_id), "precision": precision, "shape": list(stored.shape), "key": key, "qc": qc}
    atomic_write(_meta_path(cache_dir, study_id), lambda fh: fh.write(json.dumps(meta, sort_keys=True).encode()))
    return path


def _read_meta(cache_dir: str | Path, study_id: str) -> dict[str, Any] | None:
    meta = _meta_path(cache_dir, study_id)
    if not meta.exists() or not volume_path(cache_dir, study_id).exists():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_entry(cache_dir: str | Path, study_id: str) -> None:
    """Drop a study from the cache (its source became unusable)."""
    _meta_path(cache_dir, study_id).unlink(missing_ok=True)
    volume_path(cache_dir, study_id).unlink(missing_ok=True)


def entry_key(cache_dir: str | Path, study_id: str) -> dict[str, Any] | None:
    """The key a study was cached with, or None when it is not (completely) in the cache."""
    meta = _read_meta(cache_dir, study_id)
    return None if meta is None else meta.get("key")


def entry_qc(cache_dir: str | Path, study_id: str) -> dict[str, Any] | None:
    """The QC row stored with a study's cache entry, or None."""
    meta = _read_meta(cache_dir, study_id)
    return None if meta is None else meta.get("qc")


def cached_study_ids(cache_dir: str | Path) -> list[str]:
    """Ids of the studies in the cache (complete entries only), sorted.

    Args:
        cache_dir: the cache folder, e.g. ``results/{dataset}/ct``.

    Returns:
        Sorted list of study ids; empty when the folder does not exist.
    """
    folder = Path(cache_dir) / VOLUMES
    if not folder.is_dir():
        return []
    ids = []
    for meta in folder.glob("*.json"):
        if meta.with_suffix(".npy").exists():
            ids.append(unquote(meta.stem))
    return sorted(ids)


def load_preprocessed(cache_dir: str | Path, study_id: str, mmap: bool = False) -> np.ndarray:
    """Load one preprocessed volume as the encoder sees it.

    Args:
        cache_dir: the cache folder, e.g. ``results/{dataset}/ct``.
        study_id: the study's id.
        mmap: memory-map the file (only saves a copy for float32 caches).

    Returns:
        float32 array in [0, 1], shape (X, Y, Z) = ``imaging.size``, axes x->R, y->A, z->S
        (MONAI's order after ``Orientation("RAS")``).

    Raises:
        DataError: the study is not in the cache.
    """
    path = volume_path(cache_dir, study_id)
    if not path.exists() or not _meta_path(cache_dir, study_id).exists():
        raise DataError(
            f"{cache_dir}: study '{study_id}' is not in the preprocessed cache; "
            "run rule preprocess_ct (or it was left out as a bad image: see qc.parquet)"
        )
    stored = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return decode(stored)


def entry_stamp(cache_dir: str | Path, study_id: str) -> str | None:
    """A content stamp of a study's cache entry, or None when it is not in the cache.

    It changes whenever the entry is rewritten: it hashes the entry's metadata (what the
    volume was made from: source path, size and mtime, overrides, spacing, size, cache
    precision, chain version) and the ``.npy`` file's size and mtime.  The image encoder
    keys its resumable shards on it, so features of an old volume never stand in for a new one.
    """
    import hashlib

    meta_path, npy = _meta_path(cache_dir, study_id), volume_path(cache_dir, study_id)
    try:
        meta, st = meta_path.read_bytes(), npy.stat()
    except OSError:
        return None
    digest = hashlib.sha256(meta)
    digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()
