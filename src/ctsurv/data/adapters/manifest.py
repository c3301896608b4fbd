"""Adapter ``manifest``: a user's own table of studies plus image files.

Config keys (``datasets.<name>``):

* ``path``: the manifest, CSV, TSV or Parquet (relative paths from the working directory).
* ``image_root``: folder the ``image`` paths are relative to (default: the manifest's folder).
* ``columns``: optional mapping from contract names to the table's own column names, e.g.
  ``{study_id: AccessionNumber, time: os_days, age: AgeYears}``; unmapped names are looked
  up as they are.

Columns (contract names): ``study_id``, ``patient_id``, ``image`` (required); ``report``;
``time`` (days, > 0) and ``event`` (1 = event, 0 = censored), required for ``role:
survival``; ``split`` (train/val/test, used with ``use_source_splits: true``); optional
``spacing_x/y/z``, ``rescale_slope/intercept`` (override the image header); then every
column declared under ``clinical``.  An image is a NIfTI (``.nii``/``.nii.gz``), NRRD, MHA/MHD
file or a folder holding one DICOM series.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import ConfigError
from ..contract import GEOMETRY_COLUMNS
from ..tables import ROW, SOURCE, read_source_table, require_columns

REQUIRED = ["study_id", "patient_id", "image"]
OPTIONAL = ["report", "time", "event", "split"] + GEOMETRY_COLUMNS


def read_manifest(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    columns: dict | None = None,
    clinical: dict | None = None,
    survival: bool = False,
) -> pd.DataFrame:
    """Read a manifest into an adapter frame (contract column names, absolute image paths).

    Args:
        path: CSV/TSV/Parquet manifest.
        image_root: folder of relative image paths (default: the manifest's folder).
        columns: contract name -> the table's column name.
        clinical: the dataset's ``clinical`` declarations (their columns are carried over).
        survival: require ``time`` and ``event`` columns.

    Returns:
        DataFrame with the contract columns present in the table, the clinical columns
        found, and ``_source``/``_row``.
    """
    path = Path(path)
    table = read_source_table(path, what="manifest")
    mapping = dict(columns or {})
    wanted = REQUIRED + (["time", "event"] if survival else [])
    require_columns(
        table,
        [mapping.get(c, c) for c in wanted],
        path,
        fix="rename the column(s) in the table or map them with the dataset's 'columns' key in the config",
    )
    unknown = [user for name, user in mapping.items() if user not in table.columns]
    if unknown:
        raise ConfigError(f"datasets: 'columns' maps to {unknown}, which {path} does not have")
    names = REQUIRED + OPTIONAL + list(clinical or {})
    out = pd.DataFrame(index=table.index)
    for name in names:
        user = mapping.get(name, name)
        if user in table.columns:
            out[name] = table[user]
    root = Path(image_root) if image_root is not None else path.parent
    out["image"] = [
        v if pd.isna(v) else str((root / str(v).strip()).absolute()) for v in out["image"].tolist()
    ]
    out[SOURCE] = table[SOURCE]
    out[ROW] = table[ROW]
    return out


def load(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Adapter entry point (see the module docstring for the keys read)."""
    if not spec.get("path"):
        raise ConfigError(f"key 'datasets.{name}.path' is missing: the manifest adapter needs the manifest table")
    return read_manifest(
        spec["path"],
        image_root=spec.get("image_root"),
        columns=spec.get("columns"),
        clinical=spec.get("clinical"),
        survival=spec.get("role") == "survival",
    )
