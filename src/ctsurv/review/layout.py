"""The layout of a review workbook: sheets, columns and the decision vocabulary.

Sheet ``review`` has one row per (study, question).  Its first columns are written by
ctsurv and locked; the last four are for the clinician.  Sheet ``reports`` holds the report
texts.  The very hidden sheet ``_original`` repeats the locked columns row by row as they
were exported, so that :mod:`ctsurv.review.validate` can tell an edited locked cell apart
from an answer that changed upstream.
"""

from __future__ import annotations

REVIEW_SHEET = "review"
REPORTS_SHEET = "reports"
ORIGINAL_SHEET = "_original"

#: written by ctsurv, locked
READ_ONLY = ("study_id", "question_id", "question", "extracted_answer", "extraction_status", "previous_review", "report")
#: filled in by the clinician
EDITABLE = ("corrected_answer", "decision", "reviewer", "comment")
COLUMNS = READ_ONLY + EDITABLE

DECISIONS = ("approve", "correct", "reject")
#: decision of a row nobody reviewed yet (final table and status counts)
PENDING = "pending"

WIDTHS = {
    "study_id": 18,
    "question_id": 15,
    "question": 40,
    "extracted_answer": 50,
    "extraction_status": 14,
    "previous_review": 40,
    "report": 10,
    "corrected_answer": 50,
    "decision": 12,
    "reviewer": 14,
    "comment": 40,
}


def column_letter(name: str) -> str:
    """Spreadsheet letter of a column of the review sheet ('A' for study_id)."""
    from openpyxl.utils import get_column_letter

    return get_column_letter(COLUMNS.index(name) + 1)
