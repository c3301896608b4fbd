"""The cohort table: one row per study, the input of every later step.

Contract (``results/{dataset}/cohort.parquet``):

=================  ============  =====================================================
column             type          meaning
=================  ============  =====================================================
study_id           string        unique per row
patient_id         string        a patient may have several studies, all in one split
split              string        train / val / test (by patient, see :mod:`.splits`)
image              string        absolute path: a volume file or a DICOM series folder
report             string/null   radiology report text
time               float/null    follow-up in days, > 0 (null for pretrain datasets)
event              Int64/null    1 = event observed, 0 = censored
spacing_x/y/z      float/null    voxel spacing in mm; overrides the image header when set
rescale_slope      float/null    HU = raw * slope + intercept; overrides the header
rescale_intercept  float/null
<clinical>         as declared   int -> Int64, float -> float, bool -> boolean,
                                 category -> categorical (declared order), string
=================  ============  =====================================================

``build_cohort`` runs an adapter (:mod:`.adapters`), types the columns, assigns splits and
validates; ``write_cohort`` / ``read_cohort`` store it with explicit Arrow types.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pandas as pd

from ..errors import DataError, missing
from . import values
from .contract import CORE_COLUMNS, GEOMETRY_COLUMNS
from .images import image_problem
from .splits import SPLIT_NAMES, assign_splits, source_splits
from .tables import ROW, SOURCE, locate

log = logging.getLogger(__name__)

_SHOWN = 5
#: Longest plausible follow-up in days (100 years): longer means a wrong unit or a typo.
MAX_FOLLOWUP_DAYS = 36525.0
#: Study ids name files and folders (features, caches, instruction data), so they may not
#: walk out of a folder or hide: no path separators, no "." or ".." and no control characters.
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]|^\.{1,2}$")
#: control characters a report may not hold (C0 but tab and line breaks, DEL, C1)
_BAD_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
#: harmless ones, normalised: Windows/old Mac line ends, vertical tab and form feed -> newline, tab -> space
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c]")


def type_clinical(df: pd.DataFrame, clinical: dict) -> pd.DataFrame:
    """Type the declared clinical columns of an adapter frame in place and return it.

    Args:
        df: adapter frame holding the clinical columns under their config names.
        clinical: the dataset's ``clinical`` config entry ``{column: {type, categories}}``.

    Raises:
        DataError: a declared column is absent (one error naming all of them), or a
            value cannot be read as its declared type.
    """
    missing = [name for name in clinical if name not in df.columns]
    if missing:
        source = df[SOURCE].iat[0] if SOURCE in df.columns and len(df) else "the dataset"
        have = ", ".join(c for c in df.columns if c not in (SOURCE, ROW))
        raise DataError(
            f"{source}: declared clinical column(s) {missing} not found (the table has: {have}). "
            "Fix: add the column(s) to the table, map them with the dataset's 'columns' key, "
            "or remove them from 'clinical' in the config"
        )
    for name, decl in clinical.items():
        kind = decl["type"]
        if kind == "int":
            df[name] = values.parse_int(df, name)
        elif kind == "float":
            df[name] = values.parse_float(df, name)
        elif kind == "bool":
            df[name] = values.parse_bool(df, name)
        elif kind == "category":
            df[name] = values.parse_category(df, name, decl.get("categories") or [])
        else:
            df[name] = values.parse_string(df, name)
        check_range(df, name, decl)
    return df


def check_range(df: pd.DataFrame, name: str, decl: dict) -> None:
    """Raise a DataError for values of a numeric clinical column outside its declared min/max.

    Ranges are optional (``clinical: {age: {type: int, min: 0, max: 120}}``); a missing
    value is never out of range.
    """
    low, high = decl.get("min"), decl.get("max")
    if (low is None and high is None) or decl["type"] not in ("int", "float"):
        return
    column = pd.to_numeric(df[name], errors="coerce").astype("float64")
    outside = [
        i for i, v in enumerate(column.tolist())
        if not math.isnan(v) and ((low is not None and v < low) or (high is not None and v > high))
    ]
    if outside:
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        values.fail_cells(df, outside, name, f"outside the declared range {span}:",
                          f"correct the value (or its unit), or change min/max of '{name}' under 'clinical' in the config")


def standardize(raw: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Type an adapter frame's columns as the contract and the dataset's config declare.

    Args:
        raw: frame from an adapter, with at least ``study_id, patient_id, image``; optional
            ``report, time, event, split``, geometry columns, the clinical columns, and the
            ``_source``/``_row`` bookkeeping columns.
        spec: the dataset's config entry.

    Returns:
        A new frame with the core columns first (``split`` left as the adapter gave it or
        null), then geometry columns present in ``raw``, then clinical columns, then
        ``_source``/``_row``.
    """
    df = raw.reset_index(drop=True).copy()
    for column in ("study_id", "patient_id", "image"):
        if column not in df.columns:
            raise DataError(f"the dataset adapter returned no '{column}' column (a bug in the adapter)")
        df[column] = values.parse_string(df, column)
        empty = [i for i, v in enumerate(df[column].isna().tolist()) if v]
        if empty:
            values.fail_cells(df, empty, column, "empty", f"every study needs a {column}")
    for column in ("report", "split"):
        df[column] = values.parse_string(df, column) if column in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    df["report"] = clean_reports(df)
    df["time"] = values.parse_float(df, "time") if "time" in df.columns else pd.Series(float("nan"), index=df.index)
    df["event"] = values.parse_event(df, "event") if "event" in df.columns else pd.Series(pd.NA, index=df.index, dtype="Int64")
    geometry = [c for c in GEOMETRY_COLUMNS if c in df.columns]
    for column in geometry:
        df[column] = values.parse_float(df, column)
    clinical = spec.get("clinical") or {}
    type_clinical(df, clinical)
    keep = CORE_COLUMNS + geometry + list(clinical) + [c for c in (SOURCE, ROW) if c in df.columns]
    return df[keep]


def clean_reports(df: pd.DataFrame) -> pd.Series:
    """``df['report']`` with harmless control characters normalised; others are an error.

    Line ends ``\\r\\n`` and ``\\r``, vertical tab and form feed become ``\\n``, a tab becomes
    a space, and one log line counts the reports changed.  Any other control character
    (``\\x00``-``\\x08``, ``\\x0e``-``\\x1f``, DEL, ``\\x80``-``\\x9f``) stops the ingest
    with a DataError naming file, row, study and the character's code and position, never
    the report's text (reports are PHI; nothing of them goes to messages or logs).
    """
    reports = df["report"]
    texts = reports.tolist()
    bad = [i for i, r in enumerate(texts) if isinstance(r, str) and _BAD_CONTROL.search(r)]
    if bad:
        lines = []
        for i in bad[:_SHOWN]:
            found = [(m.start(), m.group()) for m in _BAD_CONTROL.finditer(texts[i])]
            codes = ", ".join(f"U+{ord(c):04X} at character {pos + 1}" for pos, c in found[:3])
            lines.append(f"{locate(df, i, 'report')}: {len(found)} control character(s) ({codes}"
                         f"{', ...' if len(found) > 3 else ''})")
        more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise DataError(
            f"{len(bad)} report(s) with control characters (report text not shown):\n  " + "\n  ".join(lines) + more
            + "\nFix: remove these characters from the reports (they are usually left over from a text export "
            "or a bad encoding: re-export the reports as UTF-8 text); tabs and line breaks are fine"
        )
    changed = 0
    cleaned = []
    for r in texts:
        if isinstance(r, str) and ("\t" in r or _LINE_BREAKS.search(r)):
            r = _LINE_BREAKS.sub("\n", r).replace("\t", " ")
            changed += 1
        cleaned.append(r)
    if changed:
        where_ = df[SOURCE].iat[0] if SOURCE in df.columns and len(df) else "the dataset"
        log.info("%s: normalised %d report(s): \\r\\n, \\r, vertical tab and form feed to \\n, tab to a space",
                 where_, changed)
    return pd.Series(cleaned, index=reports.index, dtype="string")


def _fail(df: pd.DataFrame, rows: list[int], problem: str, fix: str, column: str | None = None) -> None:
    lines = [f"{locate(df, i, column)}: {problem}" for i in rows[:_SHOWN]]
    more = f"\n  ... and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    raise DataError(f"{len(rows)} row(s) with {problem}:\n  " + "\n  ".join(lines) + more + f"\nFix: {fix}")


def _fail_near_duplicates(df: pd.DataFrame, column: str) -> None:
    """Ids that differ only in case or surrounding whitespace are one id typed twice."""
    ids = df[column].astype("string")
    key = ids.str.strip().str.casefold()
    spellings = ids.groupby(key, dropna=True).nunique()
    clashing = set(spellings[spellings > 1].index)
    if clashing:
        rows = [i for i, k in enumerate(key.tolist()) if k in clashing]
        shown = sorted({repr(ids.iat[i]) for i in rows})[: 2 * _SHOWN]
        _fail(df, rows, f"a {column} that differs from another only in case or spaces ({', '.join(shown)})",
              f"write each {column} the same way everywhere (ids are compared exactly)", column)


def validate_cohort(
    df: pd.DataFrame,
    *,
    role: str | None = None,
    require_reports: bool = False,
    check_images: bool = True,
    source: str | Path | None = None,
) -> None:
    """Check a cohort table against the contract; raise a DataError naming rows and the fix.

    Args:
        df: a standardized or stored cohort table.
        role: ``survival`` additionally requires a time and an event on every row.
        require_reports: a step that reads reports needs a non-empty report on every row.
        check_images: check that every image file or DICOM folder exists.
        source: the file named in messages when ``df`` has no ``_source`` column.
    """
    if SOURCE not in df.columns and source is not None:
        df = df.assign(**{SOURCE: str(source)})
    df = df.reset_index(drop=True)
    if len(df) == 0:
        where_ = source or "the dataset"
        raise DataError(f"{where_}: no studies (0 rows); check the dataset's path and that its table has data rows")
    ids = df["study_id"]
    unsafe = [i for i, s in enumerate(ids.tolist()) if isinstance(s, str) and _UNSAFE_ID.search(s)]
    if unsafe:
        _fail(df, unsafe, "a study_id that is not a safe file name (it holds '/', '\\', a control character, or is '.' or '..')",
              "study ids become file names: use letters, digits, '-', '_' and '.' (e.g. replace '/' by '_')", "study_id")
    for column in ("study_id", "patient_id"):
        _fail_near_duplicates(df, column)
    dup = ids.duplicated(keep=False)
    if dup.any():
        rows = [i for i in range(len(df)) if dup.iat[i]]
        _fail(df, rows, "a duplicate study_id", "give every study its own study_id (or drop the repeated row)", "study_id")

    if "split" in df.columns and df["split"].notna().any():
        bad = [i for i, s in enumerate(df["split"].tolist()) if s not in SPLIT_NAMES]
        if bad:
            _fail(df, bad, f"a split other than {list(SPLIT_NAMES)}", "use train, val or test", "split")
        per_patient = df.groupby("patient_id", sort=True)["split"].nunique()
        mixed = per_patient[per_patient > 1].index.tolist()
        if mixed:
            rows = [i for i, p in enumerate(df["patient_id"].tolist()) if p in set(mixed)]
            detail = "; ".join(
                f"patient '{p}' in {sorted(df.loc[df['patient_id'] == p, 'split'].unique().tolist())}" for p in mixed[:_SHOWN]
            )
            _fail(df, rows, f"a patient in two splits ({detail})", "put all studies of a patient in one split, or set use_source_splits: false to let ctsurv assign splits by patient", "split")

    if check_images:
        bad, why = [], {}
        for i, path in enumerate(df["image"].tolist()):
            problem = image_problem(path)
            if problem:
                bad.append(i)
                why[i] = problem
        if bad:
            lines = [f"{locate(df, i, 'image')}: {df['image'].iat[i]} {why[i]}" for i in bad[:_SHOWN]]
            more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
            raise DataError(
                f"{len(bad)} missing image file(s):\n  " + "\n  ".join(lines) + more
                + "\nFix: check the image paths and the dataset's image_root, or remove the rows"
            )

    shared = df["image"].duplicated(keep=False) & df["image"].notna()
    if shared.any():
        rows = [i for i in range(len(df)) if shared.iat[i]]
        _fail(df, rows, "an image file that another study also uses",
              "every study needs its own image; check the image paths (a copy-paste error?) or drop the repeated study", "image")

    time = pd.to_numeric(df["time"], errors="coerce")
    nonpos = [i for i, t in enumerate(time.tolist()) if pd.notna(t) and t <= 0]
    if nonpos:
        _fail(df, nonpos, "a time that is not positive", "follow-up times must be > 0 (in days); check the unit and the study date", "time")
    too_long = [i for i, t in enumerate(time.tolist()) if pd.notna(t) and t > MAX_FOLLOWUP_DAYS]
    if too_long:
        _fail(df, too_long, f"a follow-up longer than 100 years ({MAX_FOLLOWUP_DAYS:g} days)",
              "times are in days: check the unit (hours, minutes or seconds?) and the dates", "time")
    event = df["event"]
    bad_event = [i for i, e in enumerate(event.tolist()) if pd.notna(e) and e not in (0, 1)]
    if bad_event:
        _fail(df, bad_event, "an event other than 0/1", "use 1 for an observed event and 0 for censored", "event")
    if role == "survival":
        no_time = [i for i in range(len(df)) if pd.isna(time.iat[i]) or pd.isna(event.iat[i])]
        if no_time:
            _fail(df, no_time, "no follow-up (time or event empty)", "survival datasets need time and event on every row; fill them or remove the rows", "time")
    if require_reports:
        reports = df["report"]
        empty = [i for i, r in enumerate(reports.tolist()) if pd.isna(r) or not str(r).strip()]
        if empty:
            _fail(df, empty, "a missing report", "this step reads the reports: fill them in, or remove the studies without one", "report")


def build_cohort(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Read dataset ``name`` with its adapter, type, split and validate it.

    Args:
        name: the dataset's key in ``config['datasets']``.
        spec: ``config['datasets'][name]`` (schema defaults filled).
        config: the whole validated config (``splits`` is read).

    Returns:
        The cohort frame (still with ``_source``/``_row``; :func:`write_cohort` drops them).
    """
    from .adapters import load_dataset

    raw = load_dataset(name, spec, config)
    if len(raw) == 0:
        raise DataError(f"dataset '{name}': no studies (0 rows) in {spec.get('path') or 'its tables'}; "
                        "check the dataset's path keys and that the table has data rows")
    df = standardize(raw, spec)
    if spec.get("use_source_splits"):
        df["split"] = source_splits(df)
    else:
        splits = config.get("splits") or {}
        df["split"] = assign_splits(
            df["patient_id"],
            df["event"],
            seed=int(splits.get("seed", 42)),
            ratios=(splits.get("train", 0.7), splits.get("val", 0.1), splits.get("test", 0.2)),
            stratify=spec.get("role") == "survival",
        ).astype("string")
    validate_cohort(df, role=spec.get("role"))
    counts = df["split"].value_counts().to_dict()
    log.info("dataset %s: %d studies of %d patients; splits %s", name, len(df), df["patient_id"].nunique(), counts)
    return df


def _arrow_schema(df: pd.DataFrame, clinical: dict):
    import pyarrow as pa

    fields = [
        pa.field("study_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("image", pa.string(), nullable=False),
        pa.field("report", pa.string()),
        pa.field("time", pa.float64()),
        pa.field("event", pa.int64()),
    ]
    fields += [pa.field(c, pa.float64()) for c in GEOMETRY_COLUMNS if c in df.columns]
    arrow_type = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
                  "category": pa.dictionary(pa.int32(), pa.string())}
    fields += [pa.field(name, arrow_type[decl["type"]]) for name, decl in clinical.items()]
    return pa.schema(fields)


def write_cohort(df: pd.DataFrame, path: str | Path, spec: dict) -> None:
    """Write the cohort as Parquet with explicit Arrow types (bookkeeping columns dropped).

    Args:
        df: output of :func:`build_cohort`.
        path: the ``.parquet`` file (its folder is created).
        spec: the dataset's config entry (for the clinical types).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    clinical = spec.get("clinical") or {}
    schema = _arrow_schema(df, clinical)
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_cohort(path: str | Path) -> pd.DataFrame:
    """Read a cohort table written by :func:`write_cohort`.

    Returns:
        DataFrame with pandas dtypes ``string`` (ids, split, image, report), ``float64``
        (time, geometry), ``Int64`` (event, int clinical), ``boolean``, ``category``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cohort table {missing(path)} (run the rule 'ingest' or 'ctsurv ingest' first)")
    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}
    return pq.read_table(path).to_pandas(types_mapper=nullable.get)
