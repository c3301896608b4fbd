"""Export the review workbook clinicians edit (openpyxl).

One row per (study, question) on sheet ``review``, sorted by study then question order;
report texts on sheet ``reports`` (wrapped), linked from each row.  The header is frozen
and filterable; locked columns are protected (no password: the protection prevents
accidents, not intent; :mod:`ctsurv.review.validate` catches the rest); ``decision`` is a
drop-down.  Every cell is text (number format ``@``; text that looks like a formula has
Excel's quote-prefix style, see :mod:`.cells`).  Characters a workbook cannot hold are
replaced (a warning names the study); a report longer than one cell continues in the next
cells of its row on sheet ``reports``.

Re-exporting with ``previous=`` carries every decision over, matched by (study, question),
when the extracted answer is unchanged.  When it changed, the old decision is not applied
to the new answer: the row is left for review again and ``previous_review`` says what was
decided about the old answer (highlighted).

Large datasets (CT-RATE: about 300,000 rows) are handed out in parts (config
``review.parts``): :func:`export_workbooks` writes one workbook per part, a study's rows
all in the part :func:`ctsurv.shards.shard_of` names (so it keeps its part when studies are
added), each file built and saved before the next (memory of one part).  Excel holds
1,048,576 rows a sheet; a part over :data:`PART_WARN_ROWS` rows gets a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..extraction.base import Question
from ..atomic import atomic_path
from ..errors import DataError
from .cells import EXCEL_CELL_LIMIT, TEXT_FORMAT, cell_value, chunks, clean_text, needs_quote_prefix
from .layout import COLUMNS, DECISIONS, EDITABLE, ORIGINAL_SHEET, READ_ONLY, REPORTS_SHEET, REVIEW_SHEET, WIDTHS, column_letter
from .validate import check_rows, problem_message, read_workbook

log = logging.getLogger(__name__)

#: rows of one review sheet Excel can hold (1,048,576 less the header)
EXCEL_MAX_ROWS = 1_048_575
#: rows of one workbook past which a warning suggests more parts (a clinician's file stays workable)
PART_WARN_ROWS = 100_000


def part_paths(path: str | Path, parts: int) -> list[Path]:
    """The files of a workbook handed out in ``parts`` (``name.part2-of-8.xlsx``); itself when 1."""
    path = Path(path)
    if parts <= 1:
        return [path]
    return [path.with_name(f"{path.stem}.part{k}-of-{parts}{path.suffix}") for k in range(1, parts + 1)]


@dataclass(frozen=True)
class ExportSummary:
    rows: int  #: rows in the new workbook
    carried: int  #: reviewed rows carried over unchanged
    changed: int  #: reviewed rows whose extracted answer changed (to review again)
    new: int  #: rows that were not in the previous workbook
    dropped: int  #: reviewed rows of the previous workbook with no (study, question) any more


def _previous_review(row) -> str:
    text = f"answer was {row.extracted_answer!r}; {row.decision or 'correct'}"
    if row.reviewer:
        text += f" by {row.reviewer}"
    if row.corrected_answer:
        text += f", corrected to {row.corrected_answer!r}"
    if row.comment:
        text += f"; comment: {row.comment}"
    return text


def review_rows(answers: pd.DataFrame, questions: Sequence[Question], previous: pd.DataFrame | None = None) -> tuple[pd.DataFrame, ExportSummary]:
    """The rows of a new workbook, with decisions carried over from ``previous``.

    Args:
        answers: answers table (``study_id, question_id, answer, status``).
        questions: question texts (order sets the row order within a study).
        previous: rows of the previous workbook (:func:`ctsurv.review.validate.read_workbook`).

    Returns:
        ``(rows, summary)``; rows have the columns of :data:`~ctsurv.review.layout.COLUMNS`
        except ``report``, plus ``changed`` (bool).
    """
    text = {q.id: q.text for q in questions}
    order = {q.id: i for i, q in enumerate(questions)}
    rows = pd.DataFrame(
        {
            "study_id": answers["study_id"].astype(str),
            "question_id": answers["question_id"].astype(str),
            "question": answers["question_id"].map(text),
            # as the cell will show it: a failed answer's "" is an empty cell, read back as None
            "extracted_answer": pd.Series([cell_value(a) for a in answers["answer"].astype(object)], index=answers.index, dtype=object),
            "extraction_status": answers["status"].astype(str),
        }
    )
    rows["_order"] = rows["question_id"].map(order).fillna(len(order))
    rows = rows.sort_values(["study_id", "_order", "question_id"], kind="stable").drop(columns="_order").reset_index(drop=True)
    rows["extracted_answer"] = rows["extracted_answer"].where(rows["extracted_answer"].notna(), None)
    for name in ("previous_review", *EDITABLE):
        rows[name] = None
    rows["changed"] = False
    carried = changed = 0
    keys = list(zip(rows["study_id"], rows["question_id"]))
    index = {key: i for i, key in enumerate(keys)}
    dropped = 0
    seen = set()
    if previous is not None:
        for old in previous.itertuples(index=False):
            reviewed = any(getattr(old, name) for name in EDITABLE) or old.previous_review
            i = index.get((old.study_id, old.question_id))
            if i is None:
                dropped += bool(reviewed)
                continue
            seen.add(i)
            if not reviewed:
                continue
            if cell_value(old.extracted_answer) == cell_value(rows.at[i, "extracted_answer"]):
                for name in ("previous_review", *EDITABLE):
                    rows.at[i, name] = getattr(old, name)
                carried += any(getattr(old, name) for name in EDITABLE)
            elif any(getattr(old, name) for name in EDITABLE):
                rows.at[i, "previous_review"] = _previous_review(old)
                rows.at[i, "changed"] = True
                changed += 1
    new = len(rows) - len(seen) if previous is not None else len(rows)
    return rows, ExportSummary(rows=len(rows), carried=carried, changed=changed, new=new, dropped=dropped)


def export_workbook(
    answers: pd.DataFrame,
    reports: pd.DataFrame,
    questions: Sequence[Question],
    out: str | Path,
    previous: str | Path | None = None,
) -> ExportSummary:
    """Write a review workbook, carrying decisions over from ``previous`` if it exists.

    Args:
        answers: answers table (``study_id, question_id, answer, status``).
        reports: ``study_id, report`` (report may be null).
        questions: the question templates.
        out: the ``.xlsx`` to write (atomically: a reader never sees half a file).
        previous: an earlier, possibly edited, workbook; ignored when the path does not exist.

    Raises:
        DataError: when ``previous`` is damaged or holds a decision that is not valid (an
            unknown decision, a correction without its answer, a duplicated row): nothing
            is carried over silently; the message names sheet, row and column.
    """
    return export_workbooks(answers, reports, questions, [out], [] if previous is None else [previous])


def read_previous(paths: Sequence[str | Path]) -> pd.DataFrame | None:
    """The rows of the existing workbooks among ``paths``, validated (decisions normalised); None if none exists."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            continue
        old, problems = read_workbook(path)
        found, decisions = check_rows(path, old)
        problems += found
        if problems:
            raise DataError(problem_message(path, problems, "; fix them before decisions can be carried over"))
        frames.append(old.assign(decision=pd.Series(decisions, index=old.index, dtype=object)))
    return pd.concat(frames, ignore_index=True) if frames else None


def export_workbooks(
    answers: pd.DataFrame,
    reports: pd.DataFrame,
    questions: Sequence[Question],
    outs: Sequence[str | Path],
    previous: Sequence[str | Path] = (),
) -> ExportSummary:
    """Write the review workbook in ``len(outs)`` parts, carrying decisions over from ``previous``.

    A study's rows go to part ``shard_of(study_id, len(outs))``; decisions of every existing
    ``previous`` workbook are carried over by (study, question) whatever part they were in.

    Returns:
        The summary over all parts.

    Raises:
        DataError: a previous workbook is damaged or holds an invalid decision (see
            :func:`export_workbook`); a part would exceed Excel's row limit (set more parts).
    """
    from ..shards import shard_of

    old = read_previous(previous)
    _warn_about_cells(answers, reports)
    n = len(outs)
    part = answers["study_id"].astype(str).map(lambda sid: shard_of(sid, n)).to_numpy() if n > 1 else None
    totals = dict(rows=0, carried=0, changed=0, new=0)
    seen: set[tuple[str, str]] = set()
    for k, out in enumerate(outs):
        mine = answers if part is None else answers[part == k]
        studies = set(mine["study_id"].astype(str))
        if len(mine) > EXCEL_MAX_ROWS:
            raise DataError(f"{out}: {len(mine)} review rows do not fit one Excel sheet ({EXCEL_MAX_ROWS}); "
                            f"set review.parts to at least {len(answers) // PART_WARN_ROWS + 1}")
        if len(mine) > PART_WARN_ROWS:
            log.warning("%s: %d rows in one workbook; consider review.parts >= %d (about %d rows each)",
                        out, len(mine), len(answers) // PART_WARN_ROWS + 1, PART_WARN_ROWS)
        mine_old = None if old is None else old[old["study_id"].astype(str).isin(studies)]
        rows, summary = review_rows(mine, questions, mine_old)
        seen.update(zip(rows["study_id"], rows["question_id"]))
        book = _build_book(rows, reports[reports["study_id"].astype(str).isin(studies)])
        save_atomic(book, out)
        del book
        for key in totals:
            totals[key] += getattr(summary, key)
        if n > 1:
            log.info("%s: part %d of %d, %d rows of %d studies", out, k + 1, n, summary.rows, len(studies))
    dropped = 0
    if old is not None:
        for row in old.itertuples(index=False):
            reviewed = any(getattr(row, name) for name in EDITABLE) or row.previous_review
            dropped += bool(reviewed) and (row.study_id, row.question_id) not in seen
    return ExportSummary(dropped=dropped, **totals)


def _warn_about_cells(answers: pd.DataFrame, reports: pd.DataFrame) -> None:
    """Warn, by study and never quoting text, about characters replaced and answers cut."""
    for study, text in zip(reports["study_id"].astype(str), reports["report"]):
        if isinstance(text, str):
            replaced = clean_text(text)[1]
            if replaced:
                log.warning("study '%s': %d character(s) of the report cannot be stored in a workbook and were replaced", study, replaced)
            if len(text) > EXCEL_CELL_LIMIT:
                log.info("study '%s': the report (%d characters) continues over %d cells of sheet '%s'",
                         study, len(text), len(chunks(text)), REPORTS_SHEET)
    for study, question, answer in zip(answers["study_id"].astype(str), answers["question_id"].astype(str), answers["answer"]):
        if isinstance(answer, str):
            replaced = clean_text(answer)[1]
            if replaced:
                log.warning("study '%s', question '%s': %d character(s) of the answer cannot be stored in a workbook and were replaced",
                            study, question, replaced)
            if len(answer) > EXCEL_CELL_LIMIT:
                log.warning("study '%s', question '%s': the answer (%d characters) is cut to %d in the workbook",
                            study, question, len(answer), EXCEL_CELL_LIMIT)


def _build_book(rows: pd.DataFrame, reports: pd.DataFrame):
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, NamedStyle, PatternFill, Protection
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation
    from openpyxl.worksheet.hyperlink import Hyperlink

    bold = Font(bold=True)
    flag = PatternFill("solid", start_color="FFF2CC", end_color="FFF2CC")
    book = Workbook()
    # One named style per (locked, wrapped): assigning a named style is one lookup per cell,
    # setting format, protection and alignment one by one is three (export about 2x faster).
    for is_locked in (True, False):
        for wrapped in (True, False):
            book.add_named_style(NamedStyle(
                name=f"ctsurv_{is_locked}_{wrapped}", number_format=TEXT_FORMAT, protection=Protection(locked=is_locked),
                alignment=Alignment(wrap_text=wrapped, vertical="top"),
                fill=PatternFill("solid", start_color="F2F2F2", end_color="F2F2F2") if is_locked else PatternFill()))

    def put(ws, row, col, value, locked=True, wrap=False, whole=False):
        cell = ws.cell(row=row, column=col)
        cell.style = f"ctsurv_{locked}_{wrap}"
        text = (clean_text(str(value))[0] if whole else cell_value(value)) if value is not None else None
        if text:
            cell.value = text
            cell.data_type = "s"  # text, even when it starts with "="
            if needs_quote_prefix(text):
                cell.quotePrefix = True
        return cell

    review = book.active
    review.title = REVIEW_SHEET
    report_sheet = book.create_sheet(REPORTS_SHEET)
    original = book.create_sheet(ORIGINAL_SHEET)

    report_text = dict(zip(reports["study_id"].astype(str), reports["report"]))
    report_row = {}
    for col, name in enumerate(("study_id", "report"), start=1):
        put(report_sheet, 1, col, name).font = bold
    continued = 0
    for r, study in enumerate(dict.fromkeys(rows["study_id"]), start=2):
        report_row[study] = r
        put(report_sheet, r, 1, study)
        text = report_text.get(study)
        # a report longer than a cell continues in the next cells of its row, nothing is cut
        parts = chunks(clean_text(text)[0]) if isinstance(text, str) else [None]
        for col, part in enumerate(parts, start=2):
            put(report_sheet, r, col, part, wrap=True, whole=True)
        continued = max(continued, len(parts) - 1)
    for col in range(3, 3 + continued):
        put(report_sheet, 1, col, "report (continued)").font = bold
        report_sheet.column_dimensions[get_column_letter(col)].width = 120
    report_sheet.column_dimensions["A"].width = WIDTHS["study_id"]
    report_sheet.column_dimensions["B"].width = 120
    report_sheet.freeze_panes = "B2"

    for col, name in enumerate(COLUMNS, start=1):
        put(review, 1, col, name).font = bold
        review.column_dimensions[column_letter(name)].width = WIDTHS[name]
    for col, name in enumerate(READ_ONLY, start=1):
        put(original, 1, col, name)
    for r, row in enumerate(rows.itertuples(index=False), start=2):
        values = row._asdict()
        values["report"] = "view"
        for col, name in enumerate(COLUMNS, start=1):
            editable = name in EDITABLE
            cell = put(review, r, col, values[name], not editable, name in ("question", "extracted_answer", "previous_review", "corrected_answer", "comment"))
            if name == "report":
                # an internal link (location), not a relationship to an external file
                cell.hyperlink = Hyperlink(ref=cell.coordinate, location=f"'{REPORTS_SHEET}'!B{report_row[row.study_id]}", tooltip="open the report")
            if name == "previous_review" and row.changed:
                cell.fill = flag
        for col, name in enumerate(READ_ONLY, start=1):
            put(original, r, col, "view" if name == "report" else values[name])

    last = len(rows) + 1
    choices = DataValidation(
        type="list",
        formula1='"' + ",".join(DECISIONS) + '"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="decision",
        error=f"Choose {', '.join(DECISIONS)}, or leave empty.",
    )
    review.add_data_validation(choices)
    if len(rows):
        choices.add(f"{column_letter('decision')}2:{column_letter('decision')}{last}")
    review.freeze_panes = "C2"
    review.auto_filter.ref = f"A1:{column_letter(COLUMNS[-1])}{last}"
    for sheet in (review, report_sheet, original):
        sheet.protection.sheet = True
        # what protection still allows: filtering, resizing, selecting
        sheet.protection.autoFilter = False
        sheet.protection.formatColumns = False
        sheet.protection.formatRows = False
    original.sheet_state = "veryHidden"
    return book


def save_atomic(book, out: str | Path) -> None:
    """Save an openpyxl workbook via a temporary file and an atomic rename."""
    with atomic_path(out, suffix=".xlsx.tmp") as tmp:
        book.save(tmp)
