"""Read a clinician-edited review workbook and check it against the answers table.

Every problem is reported at once, each naming the workbook, sheet, spreadsheet row and
column, and what to do.  Checked: the sheets and header exist; no locked column was edited
(compared with the very hidden ``_original`` sheet); no rows were added; study and question
ids are known and each (study, question) appears once; decisions are approve / correct /
reject (any case) or empty; a correction has a corrected answer and vice versa; no cell
was turned into a date, time or number by Excel.

Recovered rather than refused: a number in a free-text column (corrected_answer,
reviewer, comment) becomes the text that was typed ("12"); a corrected answer with an
empty decision means ``correct``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError
from .cells import CoercedCell, cell_text
from .layout import COLUMNS, DECISIONS, EDITABLE, ORIGINAL_SHEET, READ_ONLY, REVIEW_SHEET, column_letter

#: errors listed in one message before "... and N more"
MAX_LISTED = 40


def _at(path, sheet: str, row: int, column: str | None = None) -> str:
    where = f"{path}, sheet '{sheet}', row {row}"
    if column is not None:
        where += f", column {column_letter(column)} '{column}'"
    return where


def read_workbook(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Parse the review sheet of a workbook without checking it against any answers.

    Args:
        path: an ``.xlsx`` written by :func:`ctsurv.review.workbook.export_workbook`,
            possibly edited.

    Returns:
        ``(rows, problems)``: one row per data row with ``sheet_row`` (1-based spreadsheet
        row) and every column of :data:`~ctsurv.review.layout.COLUMNS` as text or None;
        ``problems`` lists structural errors (coerced cells, edited locked cells, added rows).

    Raises:
        DataError: when the file cannot be opened or the review sheet or header is missing.
    """
    import openpyxl

    path = Path(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as err:  # openpyxl raises several types for a damaged file
        raise DataError(f"{path}: cannot read the review workbook ({err}); restore it from a backup or re-export") from err
    try:
        if REVIEW_SHEET not in book.sheetnames:
            raise DataError(f"{path}: no sheet '{REVIEW_SHEET}'; was the sheet renamed? Its name must stay '{REVIEW_SHEET}'")
        cells = list(book[REVIEW_SHEET].iter_rows(values_only=True))
        original = list(book[ORIGINAL_SHEET].iter_rows(values_only=True)) if ORIGINAL_SHEET in book.sheetnames else None
    finally:
        book.close()
    header = tuple(cells[0][: len(COLUMNS)]) if cells else ()
    if header != COLUMNS:
        raise DataError(f"{_at(path, REVIEW_SHEET, 1)}: header is {list(header)}, expected {list(COLUMNS)}; columns must not be renamed, moved or removed")
    if original is None:
        raise DataError(f"{path}: the hidden sheet '{ORIGINAL_SHEET}' is missing; re-export the workbook (ctsurv review update)")

    problems: list[str] = []
    records = []
    for index, values in enumerate(cells[1:]):
        sheet_row = index + 2
        values = tuple(values) + (None,) * (len(COLUMNS) - len(values))
        if all(v is None for v in values):
            continue  # Excel keeps formatted empty rows
        record = {"sheet_row": sheet_row}
        for name, value in zip(COLUMNS, values):
            try:
                record[name] = cell_text(value, allow_numbers=name in EDITABLE and name != "decision")
            except CoercedCell as err:
                problems.append(f"{_at(path, REVIEW_SHEET, sheet_row, name)}: {err}")
                record[name] = None if value is None else str(value)
        exported = original[index + 1] if index + 1 < len(original) else None
        if exported is None:
            problems.append(f"{_at(path, REVIEW_SHEET, sheet_row)}: this row was added after export; delete it (rows come from the answers table only)")
        else:
            for name, value in zip(READ_ONLY, exported):
                if record[name] != cell_text(value, allow_numbers=True):
                    problems.append(
                        f"{_at(path, REVIEW_SHEET, sheet_row, name)}: this column is read-only but was changed "
                        f"(exported {cell_text(value, allow_numbers=True)!r}, now {record[name]!r}); undo the change"
                    )
        records.append(record)
    if len(records) < len(original) - 1:
        problems.append(f"{path}, sheet '{REVIEW_SHEET}': {len(original) - 1 - len(records)} row(s) were deleted after export; restore them (leave rows you do not review empty)")
    rows = pd.DataFrame.from_records(records, columns=["sheet_row", *COLUMNS])
    text = list(COLUMNS)
    rows[text] = rows[text].astype(object).where(rows[text].notna(), None)
    return rows, problems


def load_review(path: str | Path, answers: pd.DataFrame) -> pd.DataFrame:
    """Read and fully validate a review workbook against the answers table.

    Args:
        path: the clinician's workbook.
        answers: the answers table (``study_id``, ``question_id``, ...).

    Returns:
        One row per workbook row: ``sheet_row, study_id, question_id, extracted_answer,
        corrected_answer, decision`` (approve / correct / reject, or None when not
        reviewed), ``reviewer, comment``.

    Raises:
        DataError: listing every problem with sheet, row and column.
    """
    rows, problems = read_workbook(path)
    studies = set(answers["study_id"].astype(str))
    questions = set(answers["question_id"].astype(str))
    seen: dict[tuple, int] = {}
    decisions = []
    for row in rows.itertuples(index=False):
        at = lambda column: _at(path, REVIEW_SHEET, row.sheet_row, column)  # noqa: E731
        if row.study_id is None:
            problems.append(f"{at('study_id')}: empty study id")
        elif row.study_id not in studies:
            problems.append(f"{at('study_id')}: unknown study '{row.study_id}' (not in the answers table); delete the row or re-export")
        if row.question_id is not None and row.question_id not in questions:
            problems.append(f"{at('question_id')}: unknown question '{row.question_id}'; question ids are {sorted(questions)}")
        key = (row.study_id, row.question_id)
        if key in seen:
            problems.append(f"{at('study_id')}: duplicate of row {seen[key]} (study '{row.study_id}', question '{row.question_id}'); keep one of them")
        else:
            seen[key] = row.sheet_row
        decision = row.decision.strip().lower() if row.decision else None
        if decision is not None and decision not in DECISIONS:
            problems.append(f"{at('decision')}: invalid decision {row.decision!r}; choose one of {', '.join(DECISIONS)} or leave it empty")
        if decision is None and row.corrected_answer is not None:
            decision = "correct"  # a correction speaks for itself
        if decision == "correct" and row.corrected_answer is None:
            problems.append(f"{at('corrected_answer')}: decision 'correct' needs a corrected answer; type it or choose another decision")
        if decision in ("approve", "reject") and row.corrected_answer is not None:
            problems.append(f"{at('corrected_answer')}: a corrected answer was given but the decision is '{decision}'; choose 'correct' or clear the corrected answer")
        decisions.append(decision)
    if problems:
        listed = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{path}: {len(problems)} problem(s) in the review workbook:\n  " + "\n  ".join(listed) + more)
    rows = rows.assign(decision=pd.Series(decisions, index=rows.index, dtype=object))
    return rows[["sheet_row", "study_id", "question_id", "extracted_answer", "corrected_answer", "decision", "reviewer", "comment"]]
