"""Applying a review: final table, audit table, status counts, the file-level steps."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.review.apply import apply_review, usable_answers
from ctsurv.review.audit import AUDIT_COLUMNS
from ctsurv.errors import ConfigError, DataError
from ctsurv.review.clinician import clinician_workbooks, publish_export, update_clinician_workbook
from ctsurv.review.status import review_status
from ctsurv.review.steps import current_review, run_apply, run_export
from ctsurv.review.validate import load_review
from ctsurv.review.workbook import export_workbook
from test_review_workbook import QUESTIONS, edit, make_answers, make_reports, review_values


def test_no_workbook_means_final_equals_extracted(tmp_path):
    answers = make_answers()
    final, audit = apply_review(answers, None)
    pd.testing.assert_frame_equal(final[answers.columns], answers)
    assert (final["extracted_answer"] == answers["answer"]).all()
    assert set(final["source"]) == {"extracted"} and set(final["decision"]) == {"pending"}
    assert audit.empty and list(audit.columns) == list(AUDIT_COLUMNS)


def reviewed(tmp_path, answers=None):
    path = tmp_path / "review.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    # row 2 s0 tumor approve; row 3 s0 pleura corrected; row 4 s1 tumor rejected; row 5 corrected to Not mentioned
    edit(path, {"I2": "approve", "J2": "dr a",
                "H3": "small left effusion", "J3": "dr b", "K3": "seen on image 40",
                "I4": "reject", "J4": "dr a",
                "H5": "not mentioned", "I5": "correct", "J5": "dr b"})
    return path


def test_corrections_override_and_rejections_are_marked(tmp_path):
    answers = make_answers()
    answers.loc[4, ["status", "error"]] = ["failed", "timeout"]  # s2 tumor failed, left pending
    path = reviewed(tmp_path)
    final, audit = apply_review(answers, load_review(path, answers))
    final = final.set_index(["study_id", "question_id"])
    assert final.loc[("s0", "primary_tumor"), ["answer", "source", "decision", "reviewer"]].tolist() == ["2 cm mass in the right upper lobe", "extracted", "approve", "dr a"]
    assert final.loc[("s0", "pleura"), ["answer", "status", "source", "decision", "comment", "extracted_answer"]].tolist() == [
        "small left effusion", "ok", "clinician", "correct", "seen on image 40", "Not mentioned"]
    assert final.loc[("s1", "primary_tumor"), ["answer", "decision", "source"]].tolist() == ["2 cm mass in the right upper lobe", "reject", "extracted"]
    assert final.loc[("s1", "pleura"), ["answer", "status"]].tolist() == ["not mentioned", "not_mentioned"]
    assert final.loc[("s2", "primary_tumor"), "decision"] == "pending"

    usable = usable_answers(final.reset_index())
    assert len(usable) == 4  # 6 minus the rejected one and the failed one
    assert ("s1", "primary_tumor") not in set(zip(usable.study_id, usable.question_id))

    counts = review_status(final.reset_index())
    assert counts.loc["primary_tumor"].tolist() == [1, 0, 1, 1, 3]
    assert counts.loc["pleura"].tolist() == [0, 2, 0, 1, 3]
    assert counts.loc["all"].tolist() == [1, 2, 1, 2, 6]


def test_audit_table(tmp_path):
    answers = make_answers()
    path = reviewed(tmp_path)
    final_path, audit_path = tmp_path / "qa" / "final.parquet", tmp_path / "qa" / "audit.parquet"
    answers_path = tmp_path / "answers.parquet"
    answers.to_parquet(answers_path)
    run_apply(answers_path, {None: path}, final_path, audit_path)
    audit = pd.read_parquet(audit_path)
    assert list(audit.columns) == list(AUDIT_COLUMNS)
    assert audit[["sheet_row", "decision", "reviewer"]].values.tolist() == [[2, "approve", "dr a"], [3, "correct", "dr b"], [4, "reject", "dr a"], [5, "correct", "dr b"]]
    row = audit.iloc[1]
    assert (row.extracted_answer, row.final_answer, row.comment, bool(row.applied)) == ("Not mentioned", "small left effusion", "seen on image 40", True)
    assert row.workbook == str(path) and len(row.workbook_sha256) == 64
    assert row.workbook_modified is not None and row.applied_at.endswith("+00:00")
    assert len(pd.read_parquet(final_path)) == 6


def test_decisions_on_changed_answers_stay_pending(tmp_path):
    path = reviewed(tmp_path)
    answers = make_answers()
    answers.loc[0, "answer"] = "3.1 cm mass"  # re-extracted after the export
    final, audit = apply_review(answers, load_review(path, answers))
    assert final.loc[0, "decision"] == "pending" and final.loc[0, "answer"] == "3.1 cm mass"
    first = audit.iloc[0]
    assert not first.applied and "changed since export" in first.note
    assert (first.reviewed_answer, first.extracted_answer) == ("2 cm mass in the right upper lobe", "3.1 cm mass")
    assert audit["applied"].tolist() == [False, True, True, True]


def test_run_export_creates_the_clinician_copy_once_and_never_overwrites_it(tmp_path):
    answers_path, cohort_path = tmp_path / "answers.parquet", tmp_path / "cohort.parquet"
    make_answers().to_parquet(answers_path)
    make_reports().to_parquet(cohort_path)
    questions = tmp_path / "questions.yaml"
    questions.write_text("questions:\n" + "".join(f"  - {{id: {q.id}, text: '{q.text}'}}\n" for q in QUESTIONS), encoding="utf-8")
    clinician = tmp_path / "reviews" / "demo.xlsx"
    export = tmp_path / "results" / "export.xlsx"
    run_export(answers_path, cohort_path, questions, export, {None: clinician})
    assert clinician.read_bytes() == export.read_bytes()
    edit(clinician, {"I2": "approve"})
    edited = clinician.read_bytes()
    answers = make_answers(n=4)
    answers.to_parquet(answers_path)
    make_reports(4).to_parquet(cohort_path)
    summary = run_export(answers_path, cohort_path, questions, export, {None: clinician})
    assert clinician.read_bytes() == edited  # clinician's work untouched
    assert (summary.carried, summary.new) == (1, 2)
    assert review_values(export)[("s0", "primary_tumor")]["decision"] == "approve"
    assert not publish_export(export, clinician)

    summary, backup = update_clinician_workbook(answers, make_reports(4), QUESTIONS, clinician)
    assert backup.read_bytes() == edited and backup.parent.name == "backup"
    values = review_values(clinician)
    assert len(values) == 8 and values[("s0", "primary_tumor")]["decision"] == "approve"


def test_one_workbook_per_reviewer_merged_with_conflicts(tmp_path):
    review = {"workbook": str(tmp_path / "reviews" / "{dataset}.{reviewer}.xlsx"), "reviewers": ["ana", "ben"]}
    workbooks = clinician_workbooks(review, "demo")
    assert workbooks == {"ana": tmp_path / "reviews/demo.ana.xlsx", "ben": tmp_path / "reviews/demo.ben.xlsx"}
    answers = make_answers()
    answers_path = tmp_path / "answers.parquet"
    answers.to_parquet(answers_path)
    for path in workbooks.values():
        export_workbook(answers, make_reports(), QUESTIONS, path)
    # row 2 both approve; row 3 ana corrects, ben approves (conflict); row 4 only ben rejects
    edit(workbooks["ana"], {"I2": "approve", "H3": "small effusion", "K2": "clear"})
    edit(workbooks["ben"], {"I2": "approve", "I3": "approve", "I4": "reject", "K2": "agree"})
    final, audit = current_review(answers_path, workbooks)
    final = final.set_index(["study_id", "question_id"])
    assert final.loc[("s0", "primary_tumor"), ["decision", "reviewer", "comment"]].tolist() == ["approve", "ana; ben", "clear; agree"]
    assert final.loc[("s0", "pleura"), ["decision", "answer"]].tolist() == ["pending", "Not mentioned"]
    assert final.loc[("s1", "primary_tumor"), ["decision", "reviewer"]].tolist() == ["reject", "ben"]
    conflict = audit[~audit["applied"]]
    assert conflict[["reviewer", "sheet_row"]].values.tolist() == [["ana", 3], ["ben", 3]]
    assert conflict["note"].iloc[0] == "reviewers disagree: ana: correct to 'small effusion'; ben: approve"
    assert set(audit["workbook"]) == {str(p) for p in workbooks.values()}


@pytest.mark.parametrize("review, message", [
    ({"workbook": "reviews/{dataset}.xlsx", "reviewers": ["ana"]}, "must contain {reviewer}"),
    ({"workbook": "reviews/{dataset}.{reviewer}.xlsx", "reviewers": []}, "list the reviewers"),
])
def test_reviewer_placeholder_and_list_go_together(review, message):
    with pytest.raises(ConfigError, match=message):
        clinician_workbooks(review, "demo")


def test_decision_on_a_failed_extraction_is_applied_and_kept_by_update(tmp_path):
    """A failed answer is "" (or null): its empty cell must not read as "changed since export"."""
    answers = make_answers()
    answers.loc[0, ["answer", "status", "error"]] = ["", "failed", "timeout"]  # s0 tumor
    answers.loc[3, ["answer", "status", "error"]] = [None, "failed", "timeout"]  # s1 pleura
    path = tmp_path / "review.xlsx"
    export_workbook(answers, make_reports(), QUESTIONS, path)
    edit(path, {"H2": "3 cm mass", "J2": "dr a", "I5": "reject"})
    final, audit = apply_review(answers, load_review(path, answers))
    assert final.loc[0, ["answer", "status", "decision", "source"]].tolist() == ["3 cm mass", "ok", "correct", "clinician"]
    assert final.loc[3, "decision"] == "reject"
    assert audit["applied"].tolist() == [True, True] and audit["note"].isna().all()
    # `ctsurv review update` keeps both decisions where they are
    summary, backup = update_clinician_workbook(answers, make_reports(), QUESTIONS, path)
    assert (summary.carried, summary.changed) == (2, 0) and backup.exists()
    rows = review_values(path)
    assert rows[("s0", "primary_tumor")]["corrected_answer"] == "3 cm mass"
    assert rows[("s0", "primary_tumor")]["previous_review"] is None
    assert rows[("s1", "pleura")]["decision"] == "reject"


def test_update_refuses_an_invalid_decision_and_leaves_no_backup(tmp_path):
    path = tmp_path / "reviews" / "review.xlsx"
    export_workbook(make_answers(), make_reports(), QUESTIONS, path)
    edit(path, {"I2": "maybe", "I3": "approve"})
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"row 2, column I 'decision': invalid decision 'maybe'"):
        update_clinician_workbook(make_answers(), make_reports(), QUESTIONS, path)
    assert path.read_bytes() == before
    assert not (tmp_path / "reviews" / "backup").exists()
