"""The audit table of a review: who decided what about which answer, and when.

One row per reviewed workbook row: ``study_id, question_id, sheet_row, decision,
reviewer, comment, reviewed_answer`` (the extracted answer shown in the workbook),
``extracted_answer`` (the current one), ``final_answer``, ``applied`` (False when the
answer changed since export, or when reviewers disagree), ``note``, and the workbook's ``workbook``, ``workbook_sha256``,
``workbook_modified`` / ``workbook_modified_by`` (from the file's properties, as Excel
records them), ``applied_at`` (UTC).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

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


def workbook_info(path: str | Path) -> WorkbookInfo:
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
    return WorkbookInfo(str(path), hashlib.sha256(path.read_bytes()).hexdigest(), modified, modified_by)


def audit_table(events: list[dict], workbooks: Mapping[str, WorkbookInfo] | None = None, applied_at: str | None = None) -> pd.DataFrame:
    """Build the audit table from per-row events (see the module docstring).

    Args:
        events: dicts with the non-workbook columns of :data:`AUDIT_COLUMNS` and ``workbook``
            (the path the row came from).
        workbooks: path -> :class:`WorkbookInfo` of every workbook read.
        applied_at: ISO time of this apply (default: now, UTC).
    """
    workbooks = workbooks or {}
    applied_at = applied_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    per_row = [c for c in AUDIT_COLUMNS if not c.startswith("workbook_") and c != "applied_at"]
    table = pd.DataFrame.from_records(events, columns=per_row)
    infos = [workbooks.get(path) for path in table["workbook"]]
    table["workbook_sha256"] = [i.sha256 if i else None for i in infos]
    table["workbook_modified"] = [i.modified if i else None for i in infos]
    table["workbook_modified_by"] = [i.modified_by if i else None for i in infos]
    table["applied_at"] = applied_at
    table["applied"] = table["applied"].astype(bool)
    table["sheet_row"] = table["sheet_row"].astype("int64")
    return table[list(AUDIT_COLUMNS)]
