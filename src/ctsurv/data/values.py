"""Typing of cohort values: numbers, 0/1 events, booleans, categories.

Each parser takes one column of an adapter frame and returns it typed, or raises a
:class:`~ctsurv.errors.DataError` that lists the offending cells (file, row, study, column
and value, at most five, plus a count) and says how to fix them.  Missing cells stay
missing: whether a column may be empty is decided by the caller.
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import ConfigError, DataError
from .tables import locate

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_SHOWN = 5


def _missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def fail_cells(df: pd.DataFrame, bad: list[int], column: str, problem: str, fix: str) -> None:
    """Raise one DataError listing the cells at positions ``bad`` of ``df[column]``."""
    lines = [f"{locate(df, i, column)}: {problem} {df[column].iat[i]!r}" for i in bad[:_SHOWN]]
    more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    raise DataError(f"{len(bad)} bad value(s) in column '{column}':\n  " + "\n  ".join(lines) + more + f"\nFix: {fix}")


def _to_float(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def parse_float(df: pd.DataFrame, column: str, *, fix: str = "write a plain number such as 12.5, or leave the cell empty") -> pd.Series:
    """Column as float64 (NaN where missing); non-numbers are an error."""
    out, bad = [], []
    for i, value in enumerate(df[column].tolist()):
        if _missing(value):
            out.append(math.nan)
            continue
        number = _to_float(value)
        if number is None:
            bad.append(i)
        out.append(number)
    if bad:
        fail_cells(df, bad, column, "not a number:", fix)
    return pd.Series(out, index=df.index, dtype="float64")


def parse_int(df: pd.DataFrame, column: str) -> pd.Series:
    """Column as nullable Int64; values with a fractional part are an error."""
    fix = "write a whole number such as 64, or leave the cell empty"
    floats = parse_float(df, column, fix=fix)
    bad = [i for i, v in enumerate(floats.tolist()) if not math.isnan(v) and v != int(v)]
    if bad:
        fail_cells(df, bad, column, "not a whole number:", fix)
    return floats.round().astype("Int64")


def parse_bool(df: pd.DataFrame, column: str) -> pd.Series:
    """Column as nullable boolean from true/false, 1/0, yes/no (any case)."""
    out, bad = [], []
    for i, value in enumerate(df[column].tolist()):
        if _missing(value):
            out.append(pd.NA)
            continue
        text = str(value).strip().lower()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) in (0.0, 1.0):
            text = str(int(value))
        if text in _TRUE:
            out.append(True)
        elif text in _FALSE:
            out.append(False)
        else:
            out.append(pd.NA)
            bad.append(i)
    if bad:
        fail_cells(df, bad, column, "not a yes/no value:", "write true/false, 1/0 or yes/no, or leave the cell empty")
    return pd.Series(out, index=df.index, dtype="boolean")


def parse_event(df: pd.DataFrame, column: str = "event") -> pd.Series:
    """Event indicator as nullable Int64 holding 0 (censored) or 1 (event) only."""
    out, bad = [], []
    for i, value in enumerate(df[column].tolist()):
        if _missing(value):
            out.append(pd.NA)
            continue
        number = _to_float(value)
        if number not in (0.0, 1.0):
            bad.append(i)
            out.append(pd.NA)
        else:
            out.append(int(number))
    if bad:
        fail_cells(df, bad, column, "event must be 0 or 1, got", "use 1 for an observed event (death) and 0 for censored follow-up")
    return pd.Series(out, index=df.index, dtype="Int64")


def parse_category(df: pd.DataFrame, column: str, categories: list) -> pd.Series:
    """Column as a pandas Categorical with the declared categories, in their declared order."""
    allowed = [str(c) for c in categories]
    if not allowed:
        raise ConfigError(f"clinical column '{column}' is declared as a category without its categories; list them "
                          "under 'categories' in the dataset's clinical entry, e.g. categories: [never, former, current]")
    out, bad = [], []
    for i, value in enumerate(df[column].tolist()):
        if _missing(value):
            out.append(None)
            continue
        text = str(value).strip()
        # A category such as "1" may arrive as the number 1.0 from a Parquet file.
        if text not in allowed and isinstance(value, float) and value.is_integer():
            text = str(int(value))
        if text not in allowed:
            bad.append(i)
        out.append(text)
    if bad:
        fail_cells(df, bad, column, "not an allowed category:", f"use one of {allowed} (or add the value to 'categories' in the config), or leave the cell empty")
    return pd.Series(pd.Categorical(out, categories=allowed), index=df.index)


def parse_string(df: pd.DataFrame, column: str) -> pd.Series:
    """Column as pandas nullable strings (missing cells stay missing)."""
    values = [None if _missing(v) else str(v) for v in df[column].tolist()]
    return pd.Series(values, index=df.index, dtype="string")
