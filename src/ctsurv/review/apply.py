"""Apply clinician decisions to the extracted answers: the final QA table.

``final`` = the answers table plus ``source`` (extracted / clinician), ``decision``
(approve / correct / reject / pending), ``reviewer``, ``comment`` and ``extracted_answer``.
A correction replaces ``answer`` (status becomes ok, or not_mentioned for "Not mentioned")
with source clinician; a rejection keeps the extracted text but is marked ``reject`` and
must not be used as a target (:func:`usable_answers`).  A decision made on an answer that
has changed since the workbook was exported is not applied (the row stays pending and the
audit says why): re-export with ``ctsurv review update`` and review it again.
Several reviewers' workbooks are merged: agreeing decisions apply, disagreements stay
pending and are listed in the audit table.  No workbook means no review yet: final
equals extracted, every row pending.
"""

from __future__ import annotations

import logging
from typing import Mapping

import pandas as pd

from ..extraction.base import NOT_MENTIONED
from .audit import WorkbookInfo, audit_table
from .cells import cell_value
from .layout import PENDING

log = logging.getLogger(__name__)

REVIEW_COLUMNS = ("source", "decision", "reviewer", "comment", "extracted_answer")


def apply_review(answers: pd.DataFrame, review: pd.DataFrame | None, workbooks: Mapping[str, WorkbookInfo] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge validated review rows into the answers table.

    Args:
        answers: the answers table, one row per (study, question).
        review: rows from :func:`ctsurv.review.validate.load_review` (of one workbook, or
            several concatenated, with a ``workbook`` column naming each row's file), or
            None (no workbook).
        workbooks: path -> :class:`~ctsurv.review.audit.WorkbookInfo`, for the audit table.

    Returns:
        ``(final, audit)``: the final table (same rows and order as ``answers``) and one
        audit row per decided workbook row (:data:`~ctsurv.review.audit.AUDIT_COLUMNS`).
        Decisions of several reviewers on one answer apply when they agree (reviewers and
        comments joined with "; "); when they disagree the answer stays pending and every
        decision is in the audit with ``applied`` False and the disagreement in ``note``.
    """
    final = answers.copy()
    final["extracted_answer"] = final["answer"]
    final["source"] = "extracted"
    final["decision"] = PENDING
    final["reviewer"] = None
    final["comment"] = None
    if review is None or review.empty:
        return final, audit_table([], workbooks)

    labels = dict(zip(zip(final["study_id"].astype(str), final["question_id"].astype(str)), final.index))
    by_key: dict[tuple, list] = {}
    for row in review.itertuples(index=False):
        if row.decision is not None:
            by_key.setdefault((row.study_id, row.question_id), []).append(row)
    events = []
    outdated = conflicts = 0
    for key, rows in by_key.items():
        label = labels[key]
        current = final.at[label, "answer"]
        current = None if pd.isna(current) else current
        # the workbook shows the answer as a cell holds it: a failed answer's "" is an empty
        # cell (read back as None), characters a cell cannot hold are replaced
        shown = cell_value(current)

        def event(row, applied, note=None, final_answer=current):
            return {"study_id": row.study_id, "question_id": row.question_id, "sheet_row": row.sheet_row, "decision": row.decision,
                    "reviewer": row.reviewer, "comment": row.comment, "reviewed_answer": row.extracted_answer,
                    "extracted_answer": current, "final_answer": final_answer, "applied": applied, "note": note,
                    "workbook": getattr(row, "workbook", None)}

        valid = []
        for row in rows:
            if row.extracted_answer != shown:
                outdated += 1
                events.append(event(row, False, "extracted answer changed since export; run `ctsurv review update` and review again"))
            else:
                valid.append(row)
        if not valid:
            continue
        if len({(r.decision, r.corrected_answer) for r in valid}) > 1:
            conflicts += 1
            note = "reviewers disagree: " + "; ".join(_describe(r) for r in valid)
            events += [event(r, False, note) for r in valid]
            continue
        first = valid[0]
        final.at[label, "decision"] = first.decision
        final.at[label, "reviewer"] = _join(r.reviewer for r in valid)
        final.at[label, "comment"] = _join(r.comment for r in valid)
        if first.decision == "correct":
            final.at[label, "answer"] = first.corrected_answer
            final.at[label, "status"] = "not_mentioned" if first.corrected_answer.strip().lower() == NOT_MENTIONED.lower() else "ok"
            final.at[label, "error"] = None
            final.at[label, "source"] = "clinician"
        events += [event(r, True, final_answer=final.at[label, "answer"]) for r in valid]
    if outdated:
        log.warning("%d decision(s) were made on answers that changed since export; they stay pending", outdated)
    if conflicts:
        log.warning("reviewers disagree on %d answer(s); they stay pending (see the audit table)", conflicts)
    return final, audit_table(events, workbooks)


def _describe(row) -> str:
    who = row.reviewer or getattr(row, "workbook", None) or "?"
    return f"{who}: {row.decision}" + (f" to {row.corrected_answer!r}" if row.decision == "correct" else "")


def _join(values) -> str | None:
    unique = list(dict.fromkeys(v for v in values if v))
    return "; ".join(unique) if unique else None


def usable_answers(final: pd.DataFrame) -> pd.DataFrame:
    """Rows fit to train or evaluate on: not rejected, not failed and not empty ("Not mentioned" kept)."""
    filled = final["answer"].notna() & (final["answer"].astype(str).str.strip() != "")
    return final[(final["decision"] != "reject") & (final["status"] != "failed") & filled]
