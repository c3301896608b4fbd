"""The audit table of a review: who decided what about which answer, and when.

One row per reviewed workbook row: ``study_id, question_id, sheet_row, decision,
reviewer, comment, reviewed_answer`` (the extracted answer shown in the workbook),
``extracted_answer`` (the current one), ``final_answer``, ``applied`` (False when the
answer changed since export), ``note``, and the workbook's ``workbook``, ``workbook_sha256``,
``workbook_modified`` / ``workbook_modified_by`` (from the file's properties, as Excel
records them), ``applied_at`` (UTC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

AUDIT_COLUMNS = (
    "study_id", "question_id", "sheet_row", "decision", "reviewer", "comment", "reviewed_answer",
    "extracted_answer", "final_answer", "applied", "note",
    "workbook", "workbook_sha256", "workbook_modified", "workbook_modified_by", "applied_at",
)


@dataclass(frozen=True)
class WorkbookInfo:
    path: str
    sha256: str
    modified: str | None  #: ISO time Excel stored as "last modified"
    modified_by: str | None
    applied_at: str  #: ISO UTC time of this apply


def workbook_info(path: str | Path, now: dt.datetime | None = None) -> WorkbookInfo:
    """Identify a workbook file for the audit table."""
    import openpyxl

    path = Path(path)
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        props = book.properties
        modified = props.modified.isoformat() if props.modified else None
        modified_by = props.lastModifiedBy
    finally:
        book.close()
    now = now or dt.datetime.now(dt.timezone.utc)
    return WorkbookInfo(str(path), hashlib.sha256(path.read_bytes()).hexdigest(), modified, modified_by, now.isoformat(timespec="seconds"))


def audit_table(events: list[dict], workbook: WorkbookInfo | None) -> pd.DataFrame:
    """Build the audit table from per-row events (see the module docstring)."""
    table = pd.DataFrame.from_records(events, columns=[c for c in AUDIT_COLUMNS if not c.startswith(("workbook", "applied_at"))])
    info = workbook or WorkbookInfo("", "", None, None, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    table["workbook"] = info.path
    table["workbook_sha256"] = info.sha256
    table["workbook_modified"] = info.modified
    table["workbook_modified_by"] = info.modified_by
    table["applied_at"] = info.applied_at
    table["applied"] = table["applied"].astype(bool)
    table["sheet_row"] = table["sheet_row"].astype("int64")
    return table[list(AUDIT_COLUMNS)]
