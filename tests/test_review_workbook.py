"""Review workbook export: formatting, escaping, carry-over across re-exports, digest."""

from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from ctsurv.errors import DataError
from ctsurv.extraction.base import Question
from ctsurv.review.cells import EXCEL_CELL_LIMIT
from ctsurv.review.digest import NO_REVIEW, cached_review_digest, review_digest
from ctsurv.review.apply import apply_review
from ctsurv.review.layout import COLUMNS, EDITABLE, READ_ONLY
from ctsurv.review.validate import load_review
from ctsurv.review.workbook import export_workbook

QUESTIONS = [Question("primary_tumor", "What is the location and size of the primary lung tumor?"), Question("pleura", "Is there pleural effusion?")]


def make_answers(n=3, tumor="2 cm mass in the right upper lobe"):
    rows = []
    for s in range(n):
        for q in QUESTIONS:
            answer = tumor if q.id == "primary_tumor" else "Not mentioned"
            rows.append({"study_id": f"s{s}", "question_id": q.id, "answer": answer, "status": "ok" if q.id == "primary_tumor" else "not_mentioned",
                         "error": None, "extractor": "rules", "prompt_hash": "h"})
    return pd.DataFrame(rows)


def make_reports(n=3):
    return pd.DataFrame({"study_id": [f"s{s}" for s in range(n)], "report": [f"Findings {s}: =HYPERLINK(\"x\") mass." for s in range(n)]})


def edit(path, cells: dict):
    """Set cells of the review sheet ({"I2": "approve"}) and save, as a clinician would."""
    book = openpyxl.load_workbook(path)
    for ref, value in cells.items():
        book["review"][ref] = value
    book.save(path)


def col(name):
    return openpyxl.utils.get_column_letter(COLUMNS.index(name) + 1)


FORMULA_LIKE = ["=1+1", "+44 123", "-3 mm nodule", "@sum", "'=already", "'plain"]


def test_formula_like_text_round_trips_unchanged(tmp_path):
    """Cells are text with Excel's quote prefix: no apostrophe shown, nothing run, nothing altered."""
    answers = make_answers()
    answers["answer"] = FORMULA_LIKE  # rows s0..s2 x (tumor, pleura), the sheet's own order
    path = tmp_path / "review.xlsx"
    export_workbook(answers, make_reports(), QUESTIONS, path)
    ws = openpyxl.load_workbook(path)["review"]
    for r, text in enumerate(FORMULA_LIKE, start=2):
        cell = ws[f"{col('extracted_answer')}{r}"]
        assert (cell.value, cell.data_type) == (text, "s")
        assert cell.quotePrefix is text.startswith(("=", "+", "-", "@"))
    # the clinician approves every row and corrects one to formula-like text (stored as text, as Excel does)
    book = openpyxl.load_workbook(path)
    for r in range(2, 8):
        book["review"][f"{col('decision')}{r}"] = "approve"
    book["review"][f"{col('decision')}3"] = "correct"
    book["review"][f"{col('corrected_answer')}3"] = "=B2 cm"
    book["review"][f"{col('corrected_answer')}3"].data_type = "s"
    book.save(path)
    final, audit = apply_review(answers, load_review(path, answers))
    assert audit["applied"].all()
    assert final["answer"].tolist() == [FORMULA_LIKE[0], "=B2 cm", *FORMULA_LIKE[2:]]


def test_a_formula_typed_into_a_cell_is_reported(tmp_path):
    path = tmp_path / "review.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    edit(path, {f"{col('corrected_answer')}2": "=A1"})  # openpyxl stores a formula, like Excel in a General cell
    with pytest.raises(DataError, match=r"row 2, column H 'corrected_answer': holds the formula '=A1'"):
        load_review(path, make_answers())


def test_control_characters_and_long_reports_export(tmp_path, caplog):
    """Characters a workbook cannot hold are replaced (with a warning naming the study); long
    reports continue in the next cells instead of being cut silently."""
    reports = make_reports()
    reports.loc[0, "report"] = "Mass\x0bin the right\x01 lobe."
    long_report = "Findings: " + "nodule. " * 5000  # 40,010 characters
    reports.loc[1, "report"] = long_report
    answers = make_answers()
    answers.loc[0, "answer"] = "2 cm\x0cmass\x02"
    path = tmp_path / "review.xlsx"
    with caplog.at_level("WARNING"):
        export_workbook(answers, reports, QUESTIONS, path)
    assert "study 's0'" in caplog.text and "Mass" not in caplog.text  # names the study, never the text
    book = openpyxl.load_workbook(path)
    assert book["reports"]["B2"].value == "Mass in the right\ufffd lobe."
    assert book["review"][f"{col('extracted_answer')}2"].value == "2 cm mass\ufffd"
    parts = [c.value for c in book["reports"][3][1:] if c.value is not None]
    assert len(parts) == 2 and all(len(p) <= EXCEL_CELL_LIMIT for p in parts)
    assert "".join(parts) == long_report
    assert book["reports"]["C1"].value == "report (continued)"
    # the sanitised answer is what the workbook shows; a decision on it applies
    edit(path, {f"{col('decision')}2": "approve"})
    final, audit = apply_review(answers, load_review(path, answers))
    assert final.loc[0, "decision"] == "approve" and audit["applied"].all()


def test_export_formatting(tmp_path):
    answers = make_answers()
    answers.loc[0, "answer"] = "=cmd|' /C calc'!A0"
    answers.loc[2, "answer"] = "-5 mm nodule"
    out = tmp_path / "review.xlsx"
    summary = export_workbook(answers, make_reports(), QUESTIONS, out)
    assert (summary.rows, summary.new, summary.carried) == (6, 6, 0)

    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["review", "reports", "_original"]
    assert book["_original"].sheet_state == "veryHidden"
    ws = book["review"]
    assert [c.value for c in ws[1]] == list(COLUMNS)
    assert ws.freeze_panes == "C2"
    assert ws.protection.sheet and ws.protection.autoFilter is False
    assert ws.column_dimensions[col("extracted_answer")].width == 50

    # the drop-down on the decision column, all data rows
    (validation,) = ws.data_validations.dataValidation
    assert validation.type == "list" and validation.formula1 == '"approve,correct,reject"'
    assert str(validation.sqref) == f"{col('decision')}2:{col('decision')}7"

    # every written cell is text (formula-like text with the quote prefix), locked vs editable
    assert ws[f"{col('extracted_answer')}2"].value == "=cmd|' /C calc'!A0"
    assert ws[f"{col('extracted_answer')}2"].quotePrefix and ws[f"{col('extracted_answer')}4"].quotePrefix
    assert ws[f"{col('extracted_answer')}4"].value == "-5 mm nodule"
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            name = COLUMNS[cell.column - 1]
            assert cell.number_format == "@"
            if cell.value is not None:
                assert cell.data_type == "s" and isinstance(cell.value, str)
            assert cell.protection.locked is (name in READ_ONLY)
            assert (cell.fill.fgColor.rgb == "00F2F2F2") is (name in READ_ONLY)  # locked cells greyed
    # rows sorted by study, then question order; report link points at the study's report
    assert [ws[f"A{r}"].value for r in range(2, 8)] == ["s0", "s0", "s1", "s1", "s2", "s2"]
    assert ws[f"{col('report')}4"].hyperlink.location == "'reports'!B3"
    reports = book["reports"]
    assert reports["A3"].value == "s1" and reports["B3"].value.startswith("Findings 1")
    assert reports["B3"].alignment.wrap_text
    assert book["_original"]["D2"].value == ws["D2"].value


def review_values(path):
    book = openpyxl.load_workbook(path)
    ws = book["review"]
    return {(r[0].value, r[1].value): {c: r[COLUMNS.index(c)].value for c in COLUMNS} | {"fill": r[COLUMNS.index("previous_review")].fill.fgColor.rgb}
            for r in ws.iter_rows(min_row=2)}


def test_reexport_carries_decisions_over_and_flags_changed_answers(tmp_path):
    first = tmp_path / "first.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, first)
    # s0 tumor approved; s1 tumor corrected; s2 pleura rejected with a comment
    edit(first, {"I2": "approve", "J2": "dr a",
                 "H4": "3 cm mass", "I4": "correct", "J4": "dr b",
                 "I7": "reject", "J7": "dr a", "K7": "effusion on the left"})
    answers = make_answers(n=4)  # a new study s3
    answers.loc[(answers.study_id == "s1") & (answers.question_id == "primary_tumor"), "answer"] = "4 cm mass"  # re-extracted
    second = tmp_path / "second.xlsx"
    summary = export_workbook(answers, make_reports(4), QUESTIONS, second, previous=first)
    assert (summary.rows, summary.carried, summary.changed, summary.new, summary.dropped) == (8, 2, 1, 2, 0)

    rows = review_values(second)
    assert rows[("s0", "primary_tumor")]["decision"] == "approve" and rows[("s0", "primary_tumor")]["reviewer"] == "dr a"
    assert rows[("s2", "pleura")]["decision"] == "reject" and rows[("s2", "pleura")]["comment"] == "effusion on the left"
    changed = rows[("s1", "primary_tumor")]
    assert changed["extracted_answer"] == "4 cm mass"
    assert all(changed[c] is None for c in EDITABLE)  # to review again
    assert changed["previous_review"] == "answer was '2 cm mass in the right upper lobe'; correct by dr b, corrected to '3 cm mass'"
    assert changed["fill"] == "00FFF2CC"
    assert rows[("s3", "pleura")]["decision"] is None
    assert rows[("s0", "pleura")]["fill"] != "00FFF2CC"

    # a third export from the second keeps the decisions and the note
    third = tmp_path / "third.xlsx"
    summary = export_workbook(answers, make_reports(4), QUESTIONS, third, previous=second)
    assert (summary.carried, summary.changed, summary.new) == (2, 0, 0)
    assert review_values(third)[("s1", "primary_tumor")]["previous_review"] == changed["previous_review"]


def test_reexport_drops_studies_no_longer_extracted(tmp_path):
    first = tmp_path / "first.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, first)
    edit(first, {"I6": "approve"})  # s2 tumor
    summary = export_workbook(make_answers(n=2), make_reports(2), QUESTIONS, tmp_path / "second.xlsx", previous=first)
    assert (summary.rows, summary.carried, summary.dropped) == (4, 0, 1)


def test_digest_changes_with_content_only(tmp_path):
    path = tmp_path / "review.xlsx"
    assert review_digest(path) == NO_REVIEW
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    assert review_digest(path) == NO_REVIEW  # nobody has reviewed yet
    edit(path, {})  # saved without changes: new bytes, same content
    assert review_digest(path) == NO_REVIEW
    edit(path, {"I2": "approve"})
    approved = review_digest(path)
    assert approved.startswith("sha256:")
    edit(path, {})
    assert review_digest(path) == approved
    edit(path, {"D3": "edited locked cell"})
    assert review_digest(path) not in (approved, NO_REVIEW)
    path.write_bytes(b"not a workbook")
    assert review_digest(path).startswith("bytes:")


def test_cached_digest_recomputes_on_stat_change(tmp_path):
    path, cache = tmp_path / "review.xlsx", tmp_path / "cache" / "digest.json"
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    assert cached_review_digest(path, cache) == NO_REVIEW
    assert cache.exists()
    edit(path, {"I2": "reject"})
    assert cached_review_digest(path, cache) == review_digest(path) != NO_REVIEW
