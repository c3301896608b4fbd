"""Apply clinician decisions to the extracted answers: the final QA table.

``final`` = the answers table plus ``source`` (extracted / clinician), ``decision``
(approve / correct / reject / pending), ``reviewer``, ``comment`` and ``extracted_answer``.
A correction replaces ``answer`` (status becomes ok, or not_mentioned for "Not mentioned")
with source clinician; a rejection keeps the extracted text but is marked ``reject`` and
must not be used as a target (:func:`usable_answers`).  A decision made on an answer that
has changed since the workbook was exported is not applied (the row stays pending and the
audit says why): re-export with ``ctsurv review update`` and review it again.
No workbook means no review yet: final equals extracted, every row pending.
"""

from __future__ import annotations

import logging

import pandas as pd

from ..extraction.base import NOT_MENTIONED
from .audit import AUDIT_COLUMNS, WorkbookInfo, audit_table
from .layout import PENDING

log = logging.getLogger(__name__)

REVIEW_COLUMNS = ("source", "decision", "reviewer", "comment", "extracted_answer")


def apply_review(answers: pd.DataFrame, review: pd.DataFrame | None, workbook: WorkbookInfo | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge validated review rows into the answers table.

    Args:
        answers: the answers table, one row per (study, question).
        review: rows from :func:`ctsurv.review.validate.load_review`, or None (no workbook).
        workbook: where the review came from, for the audit table.

    Returns:
        ``(final, audit)``: the final table (same rows and order as ``answers``) and one
        audit row per reviewed workbook row (:data:`~ctsurv.review.audit.AUDIT_COLUMNS`).
    """
    final = answers.copy()
    final["extracted_answer"] = final["answer"]
    final["source"] = "extracted"
    final["decision"] = PENDING
    final["reviewer"] = None
    final["comment"] = None
    if review is None or review.empty:
        return final, pd.DataFrame(columns=list(AUDIT_COLUMNS))

    position = {key: i for i, key in enumerate(zip(final["study_id"].astype(str), final["question_id"].astype(str)))}
    events = []
    outdated = 0
    for row in review.itertuples(index=False):
        if row.decision is None:
            continue
        i = position[(row.study_id, row.question_id)]
        current = final.at[final.index[i], "answer"]
        current = None if pd.isna(current) else current
        event = {"study_id": row.study_id, "question_id": row.question_id, "sheet_row": row.sheet_row,
                 "decision": row.decision, "reviewer": row.reviewer, "comment": row.comment,
                 "extracted_answer": current, "reviewed_answer": row.extracted_answer}
        if row.extracted_answer != current:
            outdated += 1
            events.append({**event, "final_answer": current, "applied": False,
                           "note": "extracted answer changed since export; run `ctsurv review update` and review again"})
            continue
        label = final.index[i]
        final.at[label, "decision"] = row.decision
        final.at[label, "reviewer"] = row.reviewer
        final.at[label, "comment"] = row.comment
        if row.decision == "correct":
            final.at[label, "answer"] = row.corrected_answer
            final.at[label, "status"] = "not_mentioned" if row.corrected_answer.strip().lower() == NOT_MENTIONED.lower() else "ok"
            final.at[label, "error"] = None
            final.at[label, "source"] = "clinician"
        events.append({**event, "final_answer": final.at[label, "answer"], "applied": True, "note": None})
    if outdated:
        log.warning("%d decision(s) were made on answers that changed since export; they stay pending", outdated)
    return final, audit_table(events, workbook)


def usable_answers(final: pd.DataFrame) -> pd.DataFrame:
    """Rows fit to train or evaluate on: not rejected and not failed ("Not mentioned" kept)."""
    return final[(final["decision"] != "reject") & (final["status"] != "failed") & final["answer"].notna()]
