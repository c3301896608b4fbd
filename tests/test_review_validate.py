"""Validation of clinician-edited workbooks: one test per error, each naming sheet, row, column."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pandas as pd
import pytest

from ctsurv.errors import DataError
from ctsurv.review.validate import load_review
from ctsurv.review.workbook import export_workbook
from test_review_workbook import QUESTIONS, edit, make_answers, make_reports


@pytest.fixture
def workbook(tmp_path):
    path = tmp_path / "review.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    return path


def problems(path, answers=None):
    with pytest.raises(DataError) as info:
        load_review(path, make_answers() if answers is None else answers)
    return str(info.value)


def test_untouched_workbook_is_all_pending(workbook):
    rows = load_review(workbook, make_answers())
    assert len(rows) == 6 and rows["decision"].isna().all()
    assert list(rows["sheet_row"]) == [2, 3, 4, 5, 6, 7]


def test_decisions_are_normalised_and_corrections_imply_correct(workbook):
    edit(workbook, {"I2": " Approve ", "H3": "small effusion", "I4": "REJECT", "H5": 12, "I5": "correct", "J5": "dr a"})
    rows = load_review(workbook, make_answers()).set_index("sheet_row")
    assert rows.loc[2, "decision"] == "approve"
    assert rows.loc[3, "decision"] == "correct" and rows.loc[3, "corrected_answer"] == "small effusion"
    assert rows.loc[4, "decision"] == "reject"
    assert rows.loc[5, "corrected_answer"] == "12"  # Excel's number recovered as the typed text
    assert rows.loc[6, "decision"] is None


def test_unknown_study(workbook):
    answers = make_answers()
    message = problems(workbook, answers[answers.study_id != "s2"])
    assert "sheet 'review', row 6, column A 'study_id': unknown study 's2'" in message
    assert "row 7, column A 'study_id': unknown study 's2'" in message


def test_unknown_question(workbook):
    answers = make_answers()
    message = problems(workbook, answers[answers.question_id != "pleura"])
    assert "sheet 'review', row 3, column B 'question_id': unknown question 'pleura'" in message


def test_edited_read_only_column(workbook):
    edit(workbook, {"D4": "a better answer"})
    message = problems(workbook)
    assert "sheet 'review', row 4, column D 'extracted_answer': this column is read-only but was changed" in message
    assert "now 'a better answer'" in message


def test_duplicate_rows(tmp_path):
    answers = pd.concat([make_answers(), make_answers().iloc[[0]]], ignore_index=True)
    path = tmp_path / "review.xlsx"
    export_workbook(answers, make_reports(), QUESTIONS, path)
    message = problems(path, answers)
    assert "row 3, column A 'study_id': duplicate of row 2 (study 's0', question 'primary_tumor')" in message


def test_invalid_decision(workbook):
    edit(workbook, {"I3": "approved"})
    assert "row 3, column I 'decision': invalid decision 'approved'; choose one of approve, correct, reject" in problems(workbook)


def test_correct_without_answer_and_answer_with_approve(workbook):
    edit(workbook, {"I2": "correct", "H3": "3 cm", "I3": "approve"})
    message = problems(workbook)
    assert "row 2, column H 'corrected_answer': decision 'correct' needs a corrected answer" in message
    assert "row 3, column H 'corrected_answer': a corrected answer was given but the decision is 'approve'" in message


def test_excel_coerced_cells(workbook):
    edit(workbook, {"A2": 1234, "H3": dt.datetime(2024, 3, 4), "I4": 1})
    message = problems(workbook)
    assert "row 2, column A 'study_id': holds the number 1234: Excel converted this text to a number" in message
    assert "row 3, column H 'corrected_answer': holds the date/time 2024-03-04 00:00:00" in message
    assert "row 4, column I 'decision': holds the number 1" in message


def test_added_and_deleted_rows(workbook):
    edit(workbook, {"A8": "s9", "B8": "pleura", "I8": "approve"})
    assert "row 8: this row was added after export" in problems(workbook)


def test_deleted_row(workbook):
    book = openpyxl.load_workbook(workbook)
    book["review"].delete_rows(7)
    book.save(workbook)
    assert "the row of study 's2', question 'pleura' (exported as row 7) is missing" in problems(workbook)


def test_renamed_header_and_missing_sheet(workbook):
    edit(workbook, {"I1": "verdict"})
    assert "sheet 'review', row 1: header is" in problems(workbook)
    book = openpyxl.load_workbook(workbook)
    book["review"].title = "my review"
    book.save(workbook)
    assert "no sheet 'review'" in problems(workbook)


def test_damaged_file(tmp_path):
    path = tmp_path / "review.xlsx"
    path.write_bytes(b"PK not really")
    assert "cannot read the review workbook" in problems(path)


def test_all_problems_reported_at_once(workbook):
    edit(workbook, {"I2": "maybe", "I3": "perhaps", "D4": "x"})
    message = problems(workbook)
    assert message.count("\n  ") == 3 and "3 problem(s)" in message


def rewrite_rows(path, order):
    """Rewrite the review sheet's data rows in ``order`` (indices of the exported data rows):
    a repeated index duplicates a row, a missing one deletes it, a permutation re-sorts them."""
    book = openpyxl.load_workbook(path)
    ws = book["review"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    ws.delete_rows(2, ws.max_row)
    for i in order:
        ws.append(rows[i])
    book.save(path)


def test_re_sorted_rows_are_matched_by_study_and_question(workbook):
    edit(workbook, {"I2": "approve", "I7": "reject"})  # s0 tumor, s2 pleura
    rewrite_rows(workbook, [5, 4, 3, 2, 1, 0])
    rows = load_review(workbook, make_answers()).set_index(["study_id", "question_id"])
    assert rows.loc[("s0", "primary_tumor"), ["decision", "sheet_row"]].tolist() == ["approve", 7]
    assert rows.loc[("s2", "pleura"), ["decision", "sheet_row"]].tolist() == ["reject", 2]
    assert rows["decision"].notna().sum() == 2


def test_a_deleted_row_is_named_once(workbook):
    rewrite_rows(workbook, [0, 2, 3, 4, 5])  # s0 pleura (row 3) deleted
    message = problems(workbook)
    assert "1 problem(s)" in message and "read-only" not in message
    assert "the row of study 's0', question 'pleura' (exported as row 3) is missing" in message


def test_a_duplicated_row_is_named_once(workbook):
    rewrite_rows(workbook, [0, 1, 1, 2, 3, 4, 5])
    message = problems(workbook)
    assert "1 problem(s)" in message and "read-only" not in message
    assert "row 4, column A 'study_id': duplicate of row 3 (study 's0', question 'pleura')" in message


def test_edited_ids_are_named_as_such(workbook):
    edit(workbook, {"A3": "s9"})
    message = problems(workbook)
    assert "row 3, column A 'study_id': this column is read-only but was changed (exported 's0', now 's9')" in message
    assert "missing" not in message and "added" not in message
