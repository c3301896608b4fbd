"""Filling the preprocessed-CT cache from a cohort table: read, check, preprocess, QC.

:func:`preprocess_cohort` runs Merlin's chain (:mod:`ctsurv.imaging.preprocess`) on every
study of a cohort and stores each volume with :mod:`ctsurv.imaging.cache` (the storage);
it returns the QC table (:mod:`ctsurv.imaging.qc`).

Which failures make an image "bad" (and, with ``on_bad_image: skip``, drop the patient):
only errors that say the image itself cannot be used: ctsurv's :class:`~ctsurv.errors.DataError`
(unreadable, truncated, 2D, not CT-like, impossible geometry, ...), nibabel's header errors
and an ``OSError`` while reading the source.  Anything else (``MemoryError``, a bug, a full
disk while writing the cache) stops the run: those patients would otherwise leave the
cohort silently for a reason that has nothing to do with their images.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .cache import PRECISIONS, VOLUMES, entry_key, entry_qc, remove_entry, write_entry
from .preprocess import check_target_grid

# Bump when the preprocessing's numbers change, so that old cache entries are redone.
CHAIN_VERSION = 1
_OVERRIDE_COLUMNS = ("spacing_x", "spacing_y", "spacing_z", "rescale_slope", "rescale_intercept")


def image_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "this image cannot be used" (see the module docstring)."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    return (DataError, ImageFileError, HeaderDataError, OSError)


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
    from . import preprocess
    from .io import BadImageError, check_ct_like, hu_summary, read_ct

    row, cache_dir, spacing, size, precision, key, threads = task
    study = str(row["study_id"])
    qc: dict[str, Any] = {"study_id": study, "image": str(row["image"])}
    out = None
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
        out = preprocess.preprocess_volume(volume, spacing, size, threads=threads)
        qc.update(out_mean=float(out.array.mean()))
        lo, hi = float(out.array.min()), float(out.array.max())
        if lo == hi:
            # No information left for the encoder: the geometry or the crop is wrong.
            raise BadImageError(
                "constant output",
                f"study '{study}' ({row['image']}): the preprocessed volume is constant ({lo:g} everywhere): "
                f"the {'x'.join(map(str, size))} grid at {spacing} mm holds no tissue; check the header's "
                "spacing and origin (or set spacing_x/y/z in the cohort)",
            )
        qc.update(status="ok", flags="", error=None)
    except BadImageError as err:
        qc.update(status="bad", flags=err.flag, error=str(err))
    except image_errors() as err:
        qc.update(status="bad", flags="unreadable", error=f"study '{study}' ({row['image']}): {type(err).__name__}: {err}")
    if qc["status"] == "bad":
        remove_entry(cache_dir, study)  # a stale volume must not stand in for a broken source
    else:
        write_entry(cache_dir, study, out.array, key, precision, qc=qc)  # outside the try: a full disk stops the run
    return qc


def preprocess_cohort(cohort_df, cache_dir: str | Path, spacing, size, workers: int = 1,
                      on_bad_image: str = "error", precision: str = "uint16", threads: int = 1):
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
        workers: processes.
        on_bad_image: ``"error"`` raises after all studies are done, naming every bad
            image; ``"skip"`` leaves bad images out (they stay in the QC table).
        precision: stored precision, one of :data:`~ctsurv.imaging.cache.PRECISIONS`.
        threads: CPU threads this call may use in all (the rule's ``threads``); each worker
            interpolates with ``threads // workers`` of them.  Never taken from the CPU
            affinity: several jobs share the machine.

    Returns:
        pandas DataFrame, one row per study: ``study_id, image, status`` (ok / cached /
        bad), ``flags``, ``error``, ``format``, ``orientation``, ``shape_x/y/z``,
        ``spacing_x/y/z`` (original), ``hu_min, hu_max, hu_p01, hu_p99``, ``out_mean``.

    Raises:
        DataError: ``on_bad_image == "error"`` and at least one image is bad.
        ConfigError: impossible target spacing or size.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    spacing, size = check_target_grid(spacing, size)
    cache_dir = Path(cache_dir)
    (cache_dir / VOLUMES).mkdir(parents=True, exist_ok=True)
    rows = cohort_df.to_dict("records")

    workers = max(1, int(workers))
    threads_per_worker = max(1, int(threads) // workers)
    results, tasks = [], []
    for row in rows:
        key = study_key(row, spacing, size, precision)
        if entry_key(cache_dir, row["study_id"]) == key:
            qc = entry_qc(cache_dir, row["study_id"]) or {"study_id": str(row["study_id"]), "image": str(row["image"])}
            results.append({**qc, "status": "cached"})
        else:
            tasks.append((row, str(cache_dir), spacing, size, precision, key, threads_per_worker))

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
