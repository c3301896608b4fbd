"""The preprocessed-CT cache: one ``.npy`` file per study, read by the image encoder.

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
import os
import sys
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


# ---------------------------------------------------------------------------------------
# Filling the cache from a cohort table.

# Bump when the preprocessing's numbers change, so that old cache entries are redone.
CHAIN_VERSION = 1
_OVERRIDE_COLUMNS = ("spacing_x", "spacing_y", "spacing_z", "rescale_slope", "rescale_intercept")


def source_fingerprint(path: str | Path) -> dict[str, Any]:
    """Path, total size and newest mtime of an image file or a DICOM folder."""
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file()]
        stats = [p.stat() for p in files]
        return {"path": str(path.resolve()), "files": len(files), "bytes": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    if path.exists():
        st = path.stat()
        return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"path": str(path), "missing": True}


def _override(row: dict[str, Any], names: tuple[str, ...]):
    values = [row.get(n) for n in names]
    present = [v is not None and not (isinstance(v, float) and np.isnan(v)) for v in values]
    if not any(present):
        return None
    return tuple(float(v) if ok else float("nan") for v, ok in zip(values, present))


def study_key(row: dict[str, Any], spacing, size, precision: str) -> dict[str, Any]:
    """Everything a study's cache entry depends on: source, overrides, settings, version."""
    return {
        "source": source_fingerprint(row["image"]),
        "overrides": {c: (None if row.get(c) is None or (isinstance(row.get(c), float) and np.isnan(row.get(c)))
                          else float(row[c])) for c in _OVERRIDE_COLUMNS},
        "spacing": [float(s) for s in spacing],
        "size": [int(s) for s in size],
        "precision": precision,
        "version": CHAIN_VERSION,
    }


def _process_study(task: tuple[dict[str, Any], str, list, list, str, dict, int]) -> dict[str, Any]:
    """Read, preprocess and store one study; returns its QC row.  Runs in a worker."""
    from .io import BadImageError, hu_summary, read_ct, check_ct_like
    from .preprocess import preprocess_volume

    row, cache_dir, spacing, size, precision, key, threads = task
    study = str(row["study_id"])
    qc: dict[str, Any] = {"study_id": study, "image": str(row["image"])}
    try:
        volume = read_ct(row["image"], study_id=study,
                         spacing=_override(row, _OVERRIDE_COLUMNS[:3]),
                         rescale=_override(row, _OVERRIDE_COLUMNS[3:]), check_ct=False)
        qc.update(format=volume.info.get("format"), orientation=volume.orientation)
        qc.update({f"shape_{a}": n for a, n in zip("xyz", volume.shape_xyz)})
        qc.update({f"spacing_{a}": s for a, s in zip("xyz", volume.spacing)})
        summary = hu_summary(volume)
        qc.update({k: summary[k] for k in ("hu_min", "hu_max", "hu_p01", "hu_p99")})
        check_ct_like(volume, summary)
        out = preprocess_volume(volume, spacing, size, threads=threads)
        qc.update(out_mean=float(out.array.mean()), status="ok", flags="", error=None)
        write_entry(cache_dir, study, out.array, key, precision, qc=qc)
    except BadImageError as err:
        qc.update(status="bad", flags=err.flag, error=str(err))
    except Exception as err:  # noqa: BLE001 - one broken file must not stop the others
        qc.update(status="bad", flags="unreadable", error=f"study '{study}' ({row['image']}): {type(err).__name__}: {err}")
    if qc["status"] == "bad":
        remove_entry(cache_dir, study)  # a stale volume must not stand in for a broken source
    return qc


def preprocess_cohort(cohort_df, cache_dir: str | Path, spacing, size, workers: int = 1,
                      on_bad_image: str = "error", precision: str = "uint16"):
    """Preprocess every study of a cohort into the cache; return the QC table.

    Studies whose entry exists with the same key (source path, size, mtime, overrides,
    settings) are skipped.  Each study is written as soon as it is done, so an interrupted
    or failed run keeps the others' work.

    Args:
        cohort_df: cohort table with ``study_id``, ``image`` and optionally
            ``spacing_x/y/z``, ``rescale_slope``, ``rescale_intercept`` (overrides).
        cache_dir: the cache folder (``results/{dataset}/ct``).
        spacing: target spacing (x, y, z) in mm.
        size: output size (X, Y, Z).
        workers: processes; each interpolates with ``cpu_count // workers`` threads.
        on_bad_image: ``"error"`` raises after all studies are done, naming every bad
            image; ``"skip"`` leaves bad images out (they stay in the QC table).
        precision: stored precision, one of :data:`PRECISIONS`.

    Returns:
        pandas DataFrame, one row per study: ``study_id, image, status`` (ok / cached /
        bad), ``flags``, ``error``, ``format``, ``orientation``, ``shape_x/y/z``,
        ``spacing_x/y/z`` (original), ``hu_min, hu_max, hu_p01, hu_p99``, ``out_mean``.

    Raises:
        DataError: ``on_bad_image == "error"`` and at least one image is bad.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    cache_dir = Path(cache_dir)
    (cache_dir / VOLUMES).mkdir(parents=True, exist_ok=True)
    rows = cohort_df.to_dict("records")
    spacing, size = [float(s) for s in spacing], [int(s) for s in size]

    threads = max(1, len(os.sched_getaffinity(0)) // max(1, workers))
    results, tasks = [], []
    for row in rows:
        key = study_key(row, spacing, size, precision)
        if entry_key(cache_dir, row["study_id"]) == key:
            qc = entry_qc(cache_dir, row["study_id"]) or {"study_id": str(row["study_id"]), "image": str(row["image"])}
            results.append({**qc, "status": "cached"})
        else:
            tasks.append((row, str(cache_dir), spacing, size, precision, key, threads))

    bar = tqdm(total=len(tasks), desc="preprocess CT", unit="study", disable=not tasks)
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(_process_study(task))
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # fork on Linux: "spawn" re-runs the parent's __main__, which in a Snakemake script
        # is the script itself.  Workers only use numpy and SimpleITK, so forking a parent
        # with library thread pools is safe here.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
            for fut in as_completed([pool.submit(_process_study, t) for t in tasks]):
                results.append(fut.result())
                bar.update()
    bar.close()

    order = {str(r["study_id"]): i for i, r in enumerate(rows)}
    table = pd.DataFrame(results)
    table = table.sort_values("study_id", key=lambda s: s.map(order)).reset_index(drop=True)
    bad = table[table["status"] == "bad"]
    if len(bad) and on_bad_image == "error":
        listing = "\n".join(f"  - {e}" for e in bad["error"])
        raise DataError(
            f"{len(bad)} of {len(table)} images cannot be used (the others are cached):\n{listing}\n"
            "Fix or remove them, or set imaging.on_bad_image: skip to leave them out"
        )
    return table
