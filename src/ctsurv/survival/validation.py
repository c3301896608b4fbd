"""Checks on survival inputs, with errors that name the column, the rows and the fix.

Every model and metric in :mod:`ctsurv.survival` calls these before touching the data, so a
bad table fails with a :class:`~ctsurv.errors.DataError` instead of a NaN loss or a cryptic
error from a library three calls down.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

# A c-index needs pairs; below this the estimate is noise and bootstraps degenerate.
MIN_TEST_PATIENTS = 5


def _rows(positions: np.ndarray, limit: int = 5) -> str:
    """Spreadsheet rows (0-based position + 2) of the first few offenders."""
    shown = ", ".join(str(int(p) + 2) for p in positions[:limit])
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    return f"rows {shown}{more}"


def _blank(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())


def _number(value) -> float | None:
    """A cell as a float (bools as 0/1), or None when it is not a number; blanks are NaN."""
    if _blank(value):
        return float("nan")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_numbers(values, what: str, column: str, problem: str | None) -> np.ndarray:
    """Values as float64: numeric arrays as they are; text cells parsed one by one.

    A cell that is not a number raises ``problem`` naming it and its rows, or becomes NaN
    when ``problem`` is None (the caller reports it with the right wording).
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(float)
    cells = np.asarray(values, dtype=object)
    parsed = [_number(v) for v in cells.ravel()]
    bad = np.flatnonzero([p is None for p in parsed])
    if bad.size and problem is not None:
        raise DataError(f"{what}, column '{column}': {problem}, got {cells.ravel()[bad[0]]!r} at {_rows(bad)}")
    return np.array([np.nan if p is None else p for p in parsed], dtype=float).reshape(cells.shape)


def check_time_event(time, event, what: str = "table", time_col: str = "time", event_col: str = "event"):
    """Validate follow-up times and event flags.

    Args:
        time: follow-up times, shape (n,); must be finite and > 0.
        event: event indicators, shape (n,); must be 0 or 1 (bool accepted).
        what: name of the table or split, used in messages.
        time_col, event_col: column names used in messages.

    Returns:
        (time float64 (n,), event bool (n,)).
    """
    time = _as_numbers(time, what, time_col, "times must be numbers (days)")
    raw_event = np.asarray(event, dtype=object) if np.asarray(event).dtype == object else np.asarray(event)
    if time.shape != raw_event.shape or time.ndim != 1:
        raise DataError(f"{what}: '{time_col}' and '{event_col}' must be 1-D and of equal length")
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        raise DataError(f"{what}, column '{time_col}': missing or non-finite times at {_rows(bad)}; drop those patients or fill in follow-up")
    bad = np.flatnonzero(time <= 0)
    if bad.size:
        raise DataError(f"{what}, column '{time_col}': times must be > 0, got {time[bad[0]]:g} at {_rows(bad)}")
    ev = _as_numbers(raw_event, what, event_col, None)
    bad = np.flatnonzero(~np.isin(ev, [0.0, 1.0]))
    if bad.size:
        shown = np.asarray(raw_event, dtype=object)[bad[0]]
        shown = shown.item() if isinstance(shown, np.generic) else shown
        raise DataError(
            f"{what}, column '{event_col}': events must be 0 (censored) or 1 (event), got {shown!r} at {_rows(bad)}"
        )
    return time, ev.astype(bool)


def check_features(x, what: str = "table", columns: Sequence[str] | None = None) -> np.ndarray:
    """Feature matrix (n, d) of finite float32; a non-finite value names its column and rows."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"{what}: features must be a 2-D matrix (patients x features), got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        name = columns[col] if columns is not None and col < len(columns) else f"feature {col}"
        raise DataError(f"{what}, column '{name}': non-finite values at {_rows(np.flatnonzero(bad[:, col]))}; impute or drop them")
    return x


def check_training_events(event, what: str = "training split") -> None:
    """A model cannot learn a hazard from a split without a single event."""
    if not np.asarray(event, dtype=bool).any():
        raise DataError(f"{what}: no events (all {len(event)} patients censored); a survival model needs at least one event")


def check_test_split(time, event, what: str = "test split") -> None:
    """Enough patients and at least one comparable pair for a c-index."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if len(time) < MIN_TEST_PATIENTS:
        raise DataError(f"{what}: {len(time)} patients, a c-index needs at least {MIN_TEST_PATIENTS}; enlarge the test fraction")
    if not event.any():
        raise DataError(f"{what}: no events among {len(time)} patients, the c-index is undefined; enlarge the test fraction")
    # Comparable pair: an event strictly before another patient's time.
    if not (time[event].min() < time.max()):
        raise DataError(f"{what}: no comparable pairs (no event before another patient's follow-up ends); the c-index is undefined")
