"""One error type for problems a user can fix.

A :class:`CtsurvError` carries a message that names the file, row, study or key at fault
and says what to do.  The command line and the workflow scripts print it without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CtsurvError(Exception):
    """A problem with the user's input or configuration, explained in the message."""


class ConfigError(CtsurvError):
    """The configuration does not match the schema or is inconsistent."""


class DataError(CtsurvError):
    """An input table, image or workbook is malformed."""


def missing(path) -> str:
    """Why a file cannot be read, for ``f"{path}: {what} {missing(path)}"``: "is a folder, not a
    file" when a folder stands where a file is expected (not "not found", which sends the user
    looking for a file that is there), else "not found"."""
    from pathlib import Path

    return "is a folder, not a file" if Path(path).is_dir() else "not found"


def where(path=None, row=None, column=None, study=None) -> str:
    """Format a location prefix such as ``cohort.csv, row 12, column 'time'``.

    Rows are counted as a person sees them in a spreadsheet: 1-based data rows, so
    ``row`` is the 0-based position in the table plus 2 (the header is row 1).
    """
    parts = []
    if path is not None:
        parts.append(str(path))
    if row is not None:
        parts.append(f"row {row}")
    if study is not None:
        parts.append(f"study '{study}'")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)
