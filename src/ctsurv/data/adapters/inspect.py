"""Adapter ``inspect``: the public INSPECT release (CT pulmonary angiograms, June 2025).

Files assumed under ``path`` (names overridable under ``files``):

* ``CTPA/<image_id>.nii.gz`` (key ``images``: the folder);
* ``study_mapping_20250611.tsv``: ``impression_id, image_id, person_id, procedure_DATETIME``
  (one row per study; errors name its rows);
* ``impressions_20250611.tsv``: ``impression_id, impressions`` (the report);
* ``labels_20250611.tsv``: keyed by ``impression_id``; ``tte_<outcome>`` and
  ``is_censored_<outcome>`` (outcome ``mortality`` by default, key ``outcome``), and labels
  such as ``pe_positive_nlp``, ``pe_acute``, ``pe_subsegmentalonly`` (TRUE/FALSE);
* ``splits_20250611.tsv``: ``impression_id, split`` (train/valid/test), used only with
  ``use_source_splits: true``.

Cohort rows: ``study_id`` = ``impression_id``; ``patient_id`` = ``person_id``; ``event`` =
not ``is_censored_<outcome>``; ``time`` = ``tte_<outcome>`` converted to days.  The unit of
``tte_*`` is not documented consistently (minutes and seconds have both been reported), so
``time_unit: auto`` (default) picks, among days, hours, minutes and seconds, the unit that
puts the longest follow-up closest to 10 years, and logs its choice; set ``time_unit``
explicitly once checked.

Clinical columns come from the labels table (``columns`` maps a clinical name to a labels
column, e.g. ``{pe_acute: pe_acute, subsegmental_only: pe_subsegmentalonly}``), or, when
listed under ``vitals``, from an EHR export: key ``ehr`` names a long-format CSV/Parquet with
one measurement per row (``person_id, time, code, value``; other names via
``ehr_columns``), ``vitals`` maps a clinical column to the code (or name) of its
measurement, e.g. ``{temperature: "LOINC/8310-5", pulse: "LOINC/8867-4"}``.  A study takes,
per vital, the person's last value measured strictly before ``procedure_DATETIME`` (no
look-ahead); none before -> missing ("unknown" in the sentence).  Units are taken as
stored: convert them in the export (e.g. °C to °F) to match the sentence template.
Age and sex are not in the release's tables: put them in the EHR table as codes too.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from ...errors import ConfigError
from .. import values
from ..tables import ROW, SOURCE, read_source_table, require_columns

log = logging.getLogger(__name__)

DEFAULT_FILES = {
    "study_mapping": "study_mapping_20250611.tsv",
    "impressions": "impressions_20250611.tsv",
    "labels": "labels_20250611.tsv",
    "splits": "splits_20250611.tsv",
}
#: Length of one unit in days.
UNIT_DAYS = {"days": 1.0, "hours": 1 / 24, "minutes": 1 / 1440, "seconds": 1 / 86400}
TYPICAL_MAX_FOLLOWUP_DAYS = 3652.5


def infer_time_unit(times: pd.Series) -> str:
    """The unit (days/hours/minutes/seconds) that puts the longest time closest to 10 years."""
    longest = pd.to_numeric(times, errors="coerce").max()
    if not longest or pd.isna(longest) or longest <= 0:
        return "days"
    target = math.log(TYPICAL_MAX_FOLLOWUP_DAYS)
    return min(UNIT_DAYS, key=lambda u: abs(math.log(longest * UNIT_DAYS[u]) - target))


def _parse_datetimes(df: pd.DataFrame, column: str) -> pd.Series:
    parsed = pd.to_datetime(df[column], errors="coerce", format="mixed")
    bad = [i for i in range(len(df)) if pd.isna(parsed.iat[i]) and not pd.isna(df[column].iat[i])]
    if bad:
        values.fail_cells(df, bad, column, "not a date-time:", "write date-times such as 2019-04-01 13:45:00")
    return parsed


def last_before(
    studies: pd.DataFrame,
    ehr: pd.DataFrame,
    vitals: dict[str, str],
    *,
    kinds: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Per study and vital, the person's last measurement strictly before the study time.

    Args:
        studies: ``person_id`` (str) and ``procedure_DATETIME`` (datetime64) per study.
        ehr: long-format measurements ``person_id`` (str), ``time`` (datetime64), ``code``,
            ``value``.
        vitals: clinical column -> code.
        kinds: clinical column -> declared type (int/float values are parsed as numbers,
            with errors naming the EHR file and row).

    Returns:
        DataFrame aligned with ``studies`` with one column per vital (missing when none).
    """
    out = pd.DataFrame(index=studies.index)
    left = studies[["person_id", "procedure_DATETIME"]].reset_index(names="_pos")
    left = left.dropna(subset=["procedure_DATETIME"]).sort_values("procedure_DATETIME")
    for column, code in vitals.items():
        sub = ehr[ehr["code"].astype(str) == str(code)].reset_index(drop=True)
        if (kinds or {}).get(column) in ("int", "float"):
            sub = sub.assign(value=values.parse_float(sub, "value"))
        sub = sub.dropna(subset=["time", "value"]).sort_values("time")[["person_id", "time", "value"]]
        merged = pd.merge_asof(
            left, sub, left_on="procedure_DATETIME", right_on="time", by="person_id",
            direction="backward", allow_exact_matches=False,
        )
        result = pd.Series(pd.NA, index=studies.index, dtype="object")
        result.loc[merged["_pos"].to_numpy()] = merged["value"].to_numpy()
        out[column] = result
    return out


def _read_ehr(spec: dict) -> pd.DataFrame:
    names = {"person_id": "person_id", "time": "time", "code": "code", "value": "value"}
    names.update(spec.get("ehr_columns") or {})
    ehr = read_source_table(spec["ehr"], what="EHR table")
    require_columns(ehr, list(names.values()), spec["ehr"], fix="name the EHR columns with 'ehr_columns' ({person_id, time, code, value})")
    ehr = ehr.rename(columns={v: k for k, v in names.items()})
    ehr["person_id"] = ehr["person_id"].astype(str).str.strip()
    ehr["time"] = _parse_datetimes(ehr, "time")
    return ehr


def load(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Adapter entry point (see the module docstring for the keys read)."""
    if not spec.get("path"):
        raise ConfigError(f"key 'datasets.{name}.path' is missing: the inspect adapter needs the release folder")
    root = Path(spec["path"])
    files = {**DEFAULT_FILES, **(spec.get("files") or {})}
    outcome = spec.get("outcome", "mortality")
    tte, censored = f"tte_{outcome}", f"is_censored_{outcome}"
    clinical = spec.get("clinical") or {}
    vitals = dict(spec.get("vitals") or {})
    mapping = dict(spec.get("columns") or {})
    if vitals and not spec.get("ehr"):
        raise ConfigError(f"dataset '{name}': 'vitals' is set but 'ehr' (the EHR measurement table) is not")

    studies = read_source_table(root / files["study_mapping"], what="study mapping")
    require_columns(studies, ["impression_id", "image_id", "person_id", "procedure_DATETIME"], root / files["study_mapping"], fix="check the INSPECT release files")
    impressions = read_source_table(root / files["impressions"], what="impressions")
    require_columns(impressions, ["impression_id", "impressions"], root / files["impressions"], fix="check the INSPECT release files")
    labels = read_source_table(root / files["labels"], what="labels")
    label_columns = [mapping.get(c, c) for c in clinical if c not in vitals]
    require_columns(labels, ["impression_id", tte, censored], root / files["labels"], fix=f"check the file, or the key 'outcome' ({outcome})")

    labels["event"] = 1 - values.parse_bool(labels, censored).astype("Int64")
    raw_time = values.parse_float(labels, tte)
    unit = spec.get("time_unit", "auto")
    if unit == "auto":
        unit = infer_time_unit(raw_time)
        log.info("dataset %s: %s read as %s (longest %.4g; set time_unit to override)", name, tte, unit, raw_time.max())
    labels["time"] = raw_time * UNIT_DAYS[unit]

    keep = ["impression_id", "time", "event"] + [c for c in label_columns if c in labels.columns]
    df = studies.merge(impressions[["impression_id", "impressions"]], on="impression_id", how="left", validate="many_to_one")
    df = df.merge(labels[keep], on="impression_id", how="left", validate="many_to_one")
    if spec.get("use_source_splits"):
        splits = read_source_table(root / files["splits"], what="splits")
        require_columns(splits, ["impression_id", "split"], root / files["splits"], fix="check the INSPECT release files")
        df = df.merge(splits[["impression_id", "split"]], on="impression_id", how="left", validate="many_to_one")

    images = root / spec.get("images", "CTPA")
    out = pd.DataFrame({
        "study_id": df["impression_id"],
        "patient_id": df["person_id"].astype(str).str.strip(),
        "image": [str((images / f"{str(i).strip()}.nii.gz").absolute()) for i in df["image_id"]],
        "report": df["impressions"],
        "time": df["time"],
        "event": df["event"],
    })
    if "split" in df.columns:
        out["split"] = df["split"]
    for column in clinical:
        if column not in vitals and mapping.get(column, column) in df.columns:
            out[column] = df[mapping.get(column, column)]
    if vitals:
        study_times = pd.DataFrame({"person_id": out["patient_id"], "procedure_DATETIME": _parse_datetimes(df, "procedure_DATETIME")})
        kinds = {c: (clinical.get(c) or {}).get("type") for c in vitals}
        out = out.join(last_before(study_times, _read_ehr(spec), vitals, kinds=kinds))
    out[SOURCE] = df[SOURCE]
    out[ROW] = df[ROW]
    return out
