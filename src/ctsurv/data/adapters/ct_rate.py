"""Adapter ``ct_rate``: the public CT-RATE release (pre-training data, no follow-up).

Layout of the release's ``dataset/`` folder (config ``path``), as published on the Hugging Face hub:

* volumes ``{split}/{split}_{patient}/{split}_{patient}_{scan}/{split}_{patient}_{scan}_{recon}.nii.gz``,
  e.g. ``train/train_1/train_1_a/train_1_a_1.nii.gz`` (``split`` is ``train`` or ``valid``).
  Today's release also ships ``train_fixed/`` and ``valid_fixed/`` (the same tree with corrected
  volumes, see its ``data_correction_note.md``): when they exist they are read instead;
* reports CSV(s) in ``radiology_text_reports/`` with ``VolumeName, ClinicalInformation_EN,
  Technique_EN, Findings_EN, Impressions_EN``;
* metadata CSV(s) in ``metadata/`` with ``VolumeName``, ``XYSpacing`` (text such as
  ``"[0.68, 0.68]"``), ``ZSpacing``, ``RescaleSlope``, ``RescaleIntercept`` (and DICOM fields such
  as ``PatientSex``, ``PatientAge``);
* ``no_chest_train.txt`` (in ``dataset/`` or ``metadata/``): volumes that are not chest CTs, left
  out (the count is logged).

Config keys: ``path`` (the ``dataset/`` folder); ``reports`` and ``metadata`` (a file or a list
of files; default every ``*.csv`` of ``radiology_text_reports/`` and ``metadata/`` under
``path``); ``volumes`` (the folder holding the split folders; default ``path``); ``exclude``
(file(s) of volume names to leave out; default the ``no_chest_*.txt`` found); ``rescale``
(``auto``, ``metadata`` or ``none``); ``columns`` (clinical column -> metadata column, e.g.
``{age: PatientAge, sex: PatientSex}``; DICOM ages such as ``063Y`` become years, ``F``/``M``
become female/male).

Intensities (``rescale: auto``): the original volumes store raw values that the metadata's
RescaleSlope/RescaleIntercept turn into Hounsfield units; the corrected ones already hold HU,
and applying the rescale again would shift every voxel by the intercept.  So the value range
decides, not the folder name: a sample of volumes is read, and when their 1st percentile is
air in HU (below -500) the metadata's rescale is not applied, otherwise it is; the log says
which, with the values seen.  ``metadata`` / ``none`` force either.

Cohort rows: ``study_id`` = volume name without ``.nii.gz``; ``patient_id`` =
``{split}_{patient}``; ``report`` = findings, a blank line, impression; spacing (and, when
applied, rescale) from the metadata (they override the NIfTI header, which CT-RATE leaves
unreliable); ``split`` = the release's (valid -> val), used only with ``use_source_splits: true``.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pandas as pd

from ...errors import ConfigError, DataError
from ..tables import ROW, SOURCE, locate, read_source_table, require_columns

REPORT_COLUMNS = ["VolumeName", "Findings_EN", "Impressions_EN"]
METADATA_COLUMNS = ["VolumeName", "XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept"]
_NAME = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<patient>[^_]+)_(?P<scan>[^_]+)_(?P<recon>[^_.]+)(\.nii(\.gz)?)?$")
_SEX = {"F": "female", "M": "male"}
#: HU of air is about -1000: a sample whose 1st percentile is below this already holds HU.
_AIR_HU = -500.0
RESCALE_SAMPLE = 3

log = logging.getLogger(__name__)


def _files(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def table_files(spec: dict, key: str) -> list[str]:
    """The reports or metadata CSVs: the config's, else every ``*.csv`` of the release folder."""
    given = _files(spec.get(key))
    if given or not spec.get("path"):
        return given
    folder = Path(spec["path"]) / {"reports": "radiology_text_reports", "metadata": "metadata"}[key]
    return [str(p) for p in sorted(folder.glob("*.csv"))]


def exclude_files(spec: dict) -> list[str]:
    """Lists of volumes to leave out: the config's ``exclude``, else the release's ``no_chest_*.txt``."""
    if "exclude" in spec:
        return _files(spec["exclude"])
    if not spec.get("path"):
        return []
    root = Path(spec["path"])
    return [str(p) for folder in (root, root / "metadata") for p in sorted(folder.glob("no_chest_*.txt"))]


def _excluded(files: list[str]) -> set[str]:
    names: set[str] = set()
    for file in files:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise DataError(f"{file}: cannot read the list of volumes to exclude ({err})") from None
        names.update(_stem(line.strip()) for line in lines if line.strip() and not line.startswith("#"))
    return names


def _stem(volume_name: str) -> str:
    return volume_name.removesuffix(".gz").removesuffix(".nii")


def split_folders(root: Path) -> dict[str, str]:
    """``{split: folder name}``: ``train_fixed``/``valid_fixed`` where the release has them, else ``train``/``valid``."""
    return {split: (f"{split}_fixed" if (root / f"{split}_fixed").is_dir() else split) for split in ("train", "valid")}


def volumes_hold_hu(images: list[str], name: str) -> bool:
    """Whether a sample of the volumes already holds Hounsfield units (air near -1000).

    Reads up to :data:`RESCALE_SAMPLE` volumes (as the header stores them, before any metadata
    rescale) and looks at their 1st percentile; logs what was seen and decided.

    Raises:
        DataError: the sampled volumes disagree (set ``rescale`` to metadata or none).
    """
    import numpy as np
    import SimpleITK as sitk

    seen = []
    for image in images:
        if len(seen) == RESCALE_SAMPLE:
            break
        if not Path(image).is_file():
            continue
        array = sitk.GetArrayFromImage(sitk.ReadImage(image))
        seen.append((image, float(np.percentile(array[::4, ::4, ::4], 1))))
        del array
    if not seen:
        raise DataError(f"dataset '{name}': none of the CT-RATE volumes was found to check its intensities "
                        f"(e.g. {images[0] if images else 'no volume listed'}); check 'path'/'volumes'")
    hu = [p01 < _AIR_HU for _, p01 in seen]
    values = ", ".join(f"{Path(i).name} {p:g}" for i, p in seen)
    if all(hu) != any(hu):
        raise DataError(f"dataset '{name}': the sampled CT-RATE volumes disagree on their intensities (1st percentiles: "
                        f"{values}): some hold Hounsfield units, some raw values; set the dataset's 'rescale' to "
                        "metadata (apply RescaleSlope/RescaleIntercept) or none")
    if hu[0]:
        log.info("dataset %s: the volumes already hold Hounsfield units (1st percentile of %d sampled: %s): "
                 "the metadata's RescaleSlope/RescaleIntercept is NOT applied", name, len(seen), values)
    else:
        log.info("dataset %s: the volumes hold raw values (1st percentile of %d sampled: %s): "
                 "the metadata's RescaleSlope/RescaleIntercept is applied", name, len(seen), values)
    return hu[0]


def _read_all(paths: list[str], what: str, columns: list[str]) -> pd.DataFrame:
    frames = []
    for path in paths:
        table = read_source_table(path, what=what)
        require_columns(table, columns, path, fix=f"point '{what}' at the CT-RATE {what} CSV")
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def volume_path(root: Path, volume_name: str, folders: dict[str, str] | None = None) -> tuple[Path, str, str]:
    """Path, split and patient id of a CT-RATE volume name such as ``train_1_a_1.nii.gz``.

    ``folders`` maps a split to its folder under ``root`` (:func:`split_folders`; default the split's name).
    """
    match = _NAME.match(volume_name)
    if match is None:
        raise ValueError(volume_name)
    split, patient, scan = match["split"], match["patient"], match["scan"]
    stem = volume_name if volume_name.endswith(".nii.gz") else f"{volume_name.removesuffix('.nii')}.nii.gz"
    folder = root / (folders or {}).get(split, split) / f"{split}_{patient}" / f"{split}_{patient}_{scan}"
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
    reports_files, meta_files = table_files(spec, "reports"), table_files(spec, "metadata")
    if not reports_files or not meta_files:
        raise ConfigError(f"dataset '{name}': the ct_rate adapter needs the reports and metadata CSVs: set 'path' to the "
                          "release's dataset/ folder (with radiology_text_reports/ and metadata/) or give keys 'reports' "
                          "and 'metadata'")
    root = Path(spec.get("volumes") or spec.get("path") or ".")
    folders = split_folders(root)
    log.info("dataset %s: volumes from %s", name, ", ".join(f"{root / f}/" for f in folders.values()))
    clinical = spec.get("clinical") or {}
    mapping = dict(spec.get("columns") or {})
    reports = _read_all(reports_files, "reports", REPORT_COLUMNS)
    meta = _read_all(meta_files, "metadata", METADATA_COLUMNS + [mapping.get(c, c) for c in clinical])
    meta_row = {v: i for i, v in enumerate(meta["VolumeName"].tolist())}
    excluded = _excluded(exclude_files(spec))
    names = [str(v).strip() for v in reports["VolumeName"].tolist()]
    dropped = sum(1 for v in names if _stem(v) in excluded)
    if excluded:
        log.info("dataset %s: %d of %d volumes left out as listed in %s (not chest CTs); %d names of the lists are not "
                 "in the reports", name, dropped, len(names), ", ".join(exclude_files(spec)),
                 len(excluded - {_stem(v) for v in names}))

    rows = []
    for i, volume in enumerate(names):
        if _stem(volume) in excluded:
            continue
        try:
            image, split, patient = volume_path(root, volume, folders)
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
    table = pd.DataFrame(rows)
    mode = spec.get("rescale", "auto")
    if mode == "none" or (mode == "auto" and len(table) and volumes_hold_hu(table["image"].tolist(), name)):
        table["rescale_slope"] = float("nan")
        table["rescale_intercept"] = float("nan")
    elif mode == "metadata":
        log.info("dataset %s: the metadata's RescaleSlope/RescaleIntercept is applied (rescale: metadata)", name)
    return table
