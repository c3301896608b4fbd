"""Adapter ``ct_rate``: the public CT-RATE release (pre-training data, no follow-up).

Layout assumed (as published on the Hugging Face hub, ``dataset/`` folder):

* volumes ``{volumes}/{split}/{split}_{patient}/{split}_{patient}_{scan}/{split}_{patient}_{scan}_{recon}.nii.gz``,
  e.g. ``train/train_1/train_1_a/train_1_a_1.nii.gz`` (``split`` is ``train`` or ``valid``);
* reports CSV(s) with ``VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN,
  Impressions_EN``;
* metadata CSV(s) with ``VolumeName``, ``XYSpacing`` (text such as ``"[0.68, 0.68]"``),
  ``ZSpacing``, ``RescaleSlope``, ``RescaleIntercept`` (and DICOM fields such as
  ``PatientSex``, ``PatientAge``).

Config keys: ``reports`` and ``metadata`` (a file or a list of files, e.g. the train and
validation CSVs), ``volumes`` (the folder holding ``train/``, ``valid/``; default ``path``),
``columns`` (clinical column -> metadata column, e.g. ``{age: PatientAge, sex:
PatientSex}``; DICOM ages such as ``063Y`` become years, ``F``/``M`` become female/male).

Cohort rows: ``study_id`` = volume name without ``.nii.gz``; ``patient_id`` =
``{split}_{patient}``; ``report`` = findings, a blank line, impression; spacing and rescale
from the metadata (they override the NIfTI header, which CT-RATE leaves unreliable);
``split`` = the release's (valid -> val), used only with ``use_source_splits: true``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd

from ...errors import ConfigError, DataError
from ..tables import ROW, SOURCE, locate, read_source_table, require_columns

REPORT_COLUMNS = ["VolumeName", "Findings_EN", "Impressions_EN"]
METADATA_COLUMNS = ["VolumeName", "XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept"]
_NAME = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<patient>[^_]+)_(?P<scan>[^_]+)_(?P<recon>[^_.]+)(\.nii(\.gz)?)?$")
_SEX = {"F": "female", "M": "male"}


def _files(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _read_all(paths: list[str], what: str, columns: list[str]) -> pd.DataFrame:
    frames = []
    for path in paths:
        table = read_source_table(path, what=what)
        require_columns(table, columns, path, fix=f"point '{what}' at the CT-RATE {what} CSV")
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def volume_path(root: Path, volume_name: str) -> tuple[Path, str, str]:
    """Path, split and patient id of a CT-RATE volume name such as ``train_1_a_1.nii.gz``."""
    match = _NAME.match(volume_name)
    if match is None:
        raise ValueError(volume_name)
    split, patient, scan = match["split"], match["patient"], match["scan"]
    stem = volume_name if volume_name.endswith(".nii.gz") else f"{volume_name.removesuffix('.nii')}.nii.gz"
    folder = root / split / f"{split}_{patient}" / f"{split}_{patient}_{scan}"
    return folder / stem, split, f"{split}_{patient}"


def _xy_spacing(meta: pd.DataFrame, i: int) -> tuple[float, float]:
    text = meta["XYSpacing"].iat[i]
    try:
        value = ast.literal_eval(str(text).strip())
        x, y = (float(v) for v in value)
    except (ValueError, SyntaxError, TypeError):
        raise DataError(
            f"{locate(meta, i, 'XYSpacing', meta['VolumeName'].iat[i])}: cannot read {text!r} as two spacings "
            "(expected text such as \"[0.68, 0.68]\"); fix the metadata CSV"
        ) from None
    return x, y


def _dicom_age(value):
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}Y", value.strip()):
        return str(int(value.strip()[:-1]))
    return value


def load(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Adapter entry point (see the module docstring for the keys read)."""
    if spec.get("role") == "survival":
        raise ConfigError(f"dataset '{name}': CT-RATE has no follow-up; use role: pretrain")
    reports_files, meta_files = _files(spec.get("reports")), _files(spec.get("metadata"))
    if not reports_files or not meta_files:
        raise ConfigError(f"dataset '{name}': the ct_rate adapter needs keys 'reports' and 'metadata' (CSV files)")
    root = Path(spec.get("volumes") or spec.get("path") or ".")
    clinical = spec.get("clinical") or {}
    mapping = dict(spec.get("columns") or {})
    reports = _read_all(reports_files, "reports", REPORT_COLUMNS)
    meta = _read_all(meta_files, "metadata", METADATA_COLUMNS + [mapping.get(c, c) for c in clinical])
    meta_row = {v: i for i, v in enumerate(meta["VolumeName"].tolist())}

    rows = []
    for i, volume in enumerate(reports["VolumeName"].tolist()):
        try:
            image, split, patient = volume_path(root, str(volume).strip())
        except ValueError:
            raise DataError(f"{locate(reports, i, 'VolumeName')}: {volume!r} is not a CT-RATE volume name such as train_1_a_1.nii.gz") from None
        j = meta_row.get(volume)
        if j is None:
            raise DataError(
                f"{locate(reports, i, 'VolumeName')}: volume {volume!r} has no row in the metadata CSV(s) {meta_files}; "
                "its spacing and rescale are needed (add the metadata or drop the report)"
            )
        sx, sy = _xy_spacing(meta, j)
        parts = [reports[c].iat[i] for c in ("Findings_EN", "Impressions_EN")]
        text = "\n\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())
        row = {
            "study_id": image.name.removesuffix(".nii.gz"),
            "patient_id": patient,
            "image": str(image.absolute()),
            "report": text or None,
            "split": split,
            "spacing_x": sx,
            "spacing_y": sy,
            "spacing_z": meta["ZSpacing"].iat[j],
            "rescale_slope": meta["RescaleSlope"].iat[j],
            "rescale_intercept": meta["RescaleIntercept"].iat[j],
            SOURCE: reports[SOURCE].iat[i],
            ROW: reports[ROW].iat[i],
        }
        for column in clinical:
            value = _dicom_age(meta[mapping.get(column, column)].iat[j])
            if mapping.get(column, column) == "PatientSex" and isinstance(value, str):
                value = _SEX.get(value.strip().upper(), value)
            row[column] = value
        rows.append(row)
    return pd.DataFrame(rows)
