"""Reading user tables (CSV, TSV, Parquet) and remembering where each row came from.

Adapters keep two bookkeeping columns on the frames they return, so that every later
error can name the file and the spreadsheet row a person would look at:

* ``_source``: the table the row was read from;
* ``_row``: its 1-based spreadsheet row (0-based position + 2; the header is row 1).

:func:`ctsurv.data.cohort.write_cohort` drops them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError, missing, where

SOURCE = "_source"
ROW = "_row"

_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def load_table(path: str | Path, *, what: str = "table", as_text: bool = True, hint: str = "") -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file.

    Args:
        path: the file; the suffix picks the reader (``.csv``, ``.tsv``/``.txt``,
            ``.parquet``/``.pq``, optionally ``.gz`` compressed text).
        what: how the file is named in error messages (e.g. "manifest").
        as_text: read CSV/TSV cells as strings (empty cells become missing), so that ids
            such as "007" stay as written and typing is done by ctsurv with errors that name
            the row; ``False`` lets pandas infer numbers (numeric feature tables).
        hint: appended to the not-found message (where to fix the path).

    Returns:
        The table, indexed 0..n-1.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} {missing(path)}{hint}")
    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix in _TEXT_SUFFIXES:
            text = {"dtype": str, "keep_default_na": False, "na_values": [""]} if as_text else {}
            df = pd.read_csv(path, sep=_TEXT_SUFFIXES[suffix], **text)
        else:
            raise DataError(f"{path}: unknown {what} format '{suffix}' (use .csv, .tsv or .parquet)")
    except DataError:
        raise
    except Exception as err:  # the readers raise many types; the file is what the user must fix
        raise DataError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from None
    return df.reset_index(drop=True)


def read_source_table(path: str | Path, *, what: str = "table") -> pd.DataFrame:
    """A dataset's source table: :func:`load_table` as text, plus the ``_source`` and ``_row``
    columns that let every later error name the file and row (adapters read with this)."""
    df = load_table(path, what=what, hint=" (check the dataset's path keys in the config)")
    df[SOURCE] = str(path)
    df[ROW] = range(2, len(df) + 2)
    return df


def require_columns(df: pd.DataFrame, columns, path, *, fix: str) -> None:
    """Raise a DataError naming every column of ``columns`` missing from ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(c for c in df.columns if c not in (SOURCE, ROW))
        raise DataError(f"{path}: column(s) {missing} not found (the table has: {have}); {fix}")


def locate(df: pd.DataFrame, i: int, column: str | None = None, study=None) -> str:
    """Location prefix for row position ``i`` of an adapter frame: file, row, study, column."""
    source = df[SOURCE].iat[i] if SOURCE in df.columns else None
    row = int(df[ROW].iat[i]) if ROW in df.columns else i + 2
    if study is None and "study_id" in df.columns:
        study = df["study_id"].iat[i]
    return where(source, row, column, study)


def text_count(texts) -> tuple[int, int]:
    """(non-empty, all) of report texts: a missing value or whitespace is empty."""
    values = list(texts)
    return sum(1 for t in values if isinstance(t, str) and t.strip()), len(values)


def check_has_text(texts, source, column: str, flag: str = "--text-column") -> None:
    """Refuse a report table whose texts are all empty (the outputs would be empty, silently).

    Raises:
        DataError: naming the file, the column and how many rows it has.
    """
    filled, total = text_count(texts)
    if total and not filled:
        raise DataError(f"{source}, column '{column}': all {total} report texts are empty; name the column that holds "
                        f"the report text ({flag}) or fill in the reports")
    if not total:
        raise DataError(f"{source}: the table has no rows")
