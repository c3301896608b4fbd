"""Read a clinician-edited review workbook and check it against the answers table.

Every problem is reported at once, each naming the workbook, sheet, spreadsheet row and
column, and what to do.  Checked: the sheets and header exist; no locked column was edited
(compared with the very hidden ``_original`` sheet, row by row matched on study and question,
so a re-sorted sheet is fine); no rows were added or deleted; study and question
ids are known and each (study, question) appears once; decisions are approve / correct /
reject (any case) or empty; a correction has a corrected answer and vice versa; no cell
was turned into a date, time, number or formula by Excel.

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

    Rows are matched with the exported ones (the hidden ``_original`` sheet) by (study,
    question), not by position, so a re-sorted sheet is fine and a deleted, duplicated or
    added row is named once instead of shifting every row below it.

    Args:
        path: an ``.xlsx`` written by :func:`ctsurv.review.workbook.export_workbook`,
            possibly edited.

    Returns:
        ``(rows, problems)``: one row per data row with ``sheet_row`` (1-based spreadsheet
        row) and every column of :data:`~ctsurv.review.layout.COLUMNS` as text or None;
        ``problems`` lists structural errors (coerced cells, edited locked cells, added or
        deleted rows).

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
        # cells, not values: a formula (data type "f") must not pass for the text it shows
        cells = [[(c.value, getattr(c, "data_type", None) == "f") for c in r] for r in book[REVIEW_SHEET].iter_rows()]
        original = list(book[ORIGINAL_SHEET].iter_rows(values_only=True)) if ORIGINAL_SHEET in book.sheetnames else None
    finally:
        book.close()
    header = tuple(v for v, _ in cells[0][: len(COLUMNS)]) if cells else ()
    if header != COLUMNS:
        raise DataError(f"{_at(path, REVIEW_SHEET, 1)}: header is {list(header)}, expected {list(COLUMNS)}; columns must not be renamed, moved or removed")
    if original is None:
        raise DataError(f"{path}: the hidden sheet '{ORIGINAL_SHEET}' is missing; re-export the workbook (ctsurv review update)")

    exported = [dict(zip(READ_ONLY, (cell_text(v, allow_numbers=True) for v in values))) for values in original[1:]]
    problems: list[str] = []
    records = []
    for index, values in enumerate(cells[1:]):
        sheet_row = index + 2
        values = list(values) + [(None, False)] * (len(COLUMNS) - len(values))
        if all(v is None for v, _ in values):
            continue  # Excel keeps formatted empty rows
        record = {"sheet_row": sheet_row}
        for name, (value, formula) in zip(COLUMNS, values):
            try:
                record[name] = cell_text(value, allow_numbers=name in EDITABLE and name != "decision", formula=formula)
            except CoercedCell as err:
                problems.append(f"{_at(path, REVIEW_SHEET, sheet_row, name)}: {err}")
                record[name] = None if value is None else str(value)
        records.append(record)

    matched = _match_exported(records, exported)
    for record, i in zip(records, matched):
        if i is None:
            problems.append(f"{_at(path, REVIEW_SHEET, record['sheet_row'])}: this row was added after export; delete it (rows come from the answers table only)")
            continue
        for name in READ_ONLY:
            if record[name] != exported[i][name]:
                problems.append(
                    f"{_at(path, REVIEW_SHEET, record['sheet_row'], name)}: this column is read-only but was changed "
                    f"(exported {exported[i][name]!r}, now {record[name]!r}); undo the change"
                )
    for i in sorted(set(range(len(exported))) - set(matched)):
        problems.append(
            f"{path}, sheet '{REVIEW_SHEET}': the row of study '{exported[i]['study_id']}', question "
            f"'{exported[i]['question_id']}' (exported as row {i + 2}) is missing: it was deleted after export; "
            "restore it (leave rows you do not review empty) or re-export"
        )
    rows = pd.DataFrame.from_records(records, columns=["sheet_row", *COLUMNS])
    text = list(COLUMNS)
    rows[text] = rows[text].astype(object).where(rows[text].notna(), None)
    return rows, problems


def _match_exported(records: list[dict], exported: list[dict]) -> list[int | None]:
    """The exported row (index into ``exported``) each sheet row comes from, or None (added).

    A row is matched by (study, question): first with the exported row at its own position,
    then with an unused exported row of that key, so sorting, deleting or duplicating rows
    names only the rows concerned.  A row whose ids match no exported row takes the exported
    row at its position if nothing else claims it (its ids were edited), else it was added.
    """
    by_key: dict[tuple, list[int]] = {}
    for i, row in enumerate(exported):
        by_key.setdefault((row["study_id"], row["question_id"]), []).append(i)
    used: set[int] = set()
    matched: list[int | None] = [None] * len(records)
    for n, record in enumerate(records):
        key = (record["study_id"], record["question_id"])
        at = record["sheet_row"] - 2
        candidates = by_key.get(key, [])
        if at in candidates and at not in used:
            matched[n] = at
        else:
            # a duplicate of an exported row is compared with it (check_rows names the duplicate)
            matched[n] = next((i for i in candidates if i not in used), candidates[0] if candidates else None)
        if matched[n] is not None:
            used.add(matched[n])
    for n, record in enumerate(records):
        at = record["sheet_row"] - 2
        if matched[n] is None and (record["study_id"], record["question_id"]) not in by_key and at < len(exported) and at not in used:
            matched[n] = at
            used.add(at)
    return matched


def check_rows(path: str | Path, rows: pd.DataFrame, studies: set[str] | None = None, questions: set[str] | None = None) -> tuple[list[str], list[str | None]]:
    """Problems of the rows of :func:`read_workbook` and their normalised decisions.

    Args:
        path: the workbook (for the messages).
        rows: from :func:`read_workbook`.
        studies, questions: the ids the answers table knows (None: not checked, as when
            carrying decisions over to a re-export, where unknown rows are dropped).

    Returns:
        ``(problems, decisions)``: decisions are approve / correct / reject or None, one
        per row (a corrected answer without a decision means ``correct``).
    """
    problems: list[str] = []
    seen: dict[tuple, int] = {}
    decisions: list[str | None] = []
    for row in rows.itertuples(index=False):
        at = lambda column: _at(path, REVIEW_SHEET, row.sheet_row, column)  # noqa: E731
        if studies is not None:
            if row.study_id is None:
                problems.append(f"{at('study_id')}: empty study id")
            elif row.study_id not in studies:
                problems.append(f"{at('study_id')}: unknown study '{row.study_id}' (not in the answers table); delete the row or re-export")
        if questions is not None and row.question_id is not None and row.question_id not in questions:
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
    return problems, decisions


def problem_message(path: str | Path, problems: list[str], what: str = "in the review workbook") -> str:
    """One message listing at most :data:`MAX_LISTED` problems."""
    listed = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{path}: {len(problems)} problem(s) {what}:\n  " + "\n  ".join(listed) + more


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
    found, decisions = check_rows(path, rows, set(answers["study_id"].astype(str)), set(answers["question_id"].astype(str)))
    problems += found
    if problems:
        raise DataError(problem_message(path, problems))
    rows = rows.assign(decision=pd.Series(decisions, index=rows.index, dtype=object))
    return rows[["sheet_row", "study_id", "question_id", "extracted_answer", "corrected_answer", "decision", "reviewer", "comment"]]
