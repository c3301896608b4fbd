"""The review steps on files, as the workflow scripts and the command line run them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..extraction.questions import load_questions
from .apply import apply_review
from .audit import WorkbookInfo, workbook_info
from .clinician import publish_export
from .validate import load_review
from .workbook import ExportSummary, export_workbooks, part_paths

log = logging.getLogger(__name__)


def read_reports(cohort: str | Path) -> pd.DataFrame:
    """``study_id, report`` of a cohort table."""
    table = pd.read_parquet(cohort, columns=["study_id", "report"])
    table["study_id"] = table["study_id"].astype(str)
    return table


def run_export(answers: str | Path, cohort: str | Path, questions: str | Path, out: str | Path,
               workbooks: Mapping[str | None, Path], parts: int = 1) -> ExportSummary:
    """Export ``out`` and create every clinician workbook that does not exist yet.

    With one (shared) clinician workbook its decisions are carried over into ``out`` and a
    warning says when it is out of date; with one workbook per reviewer ``out`` is a clean
    export.  With ``parts`` > 1 every workbook is handed out in that many files
    (:func:`~ctsurv.review.workbook.part_paths`: ``out`` and each clinician path get
    ``.partK-of-N`` before ``.xlsx``).
    """
    paths = [Path(p) for p in workbooks.values()]
    previous = part_paths(paths[0], parts) if len(paths) == 1 else []
    outs = part_paths(out, parts)
    summary = export_workbooks(pd.read_parquet(answers), read_reports(cohort), load_questions(questions), outs, previous)
    log.info("exported %s: %d rows, %d decisions carried over, %d changed answers, %d new rows, %d reviewed rows dropped",
             ", ".join(map(str, outs)), summary.rows, summary.carried, summary.changed, summary.new, summary.dropped)
    existed = any(p.exists() for p in previous)
    for path in paths:
        for export, clinician in zip(outs, part_paths(path, parts)):
            if publish_export(export, clinician):
                log.info("created the clinician workbook %s", clinician)
    if existed and (summary.new or summary.changed):
        log.warning("%s is out of date (%d new rows, %d changed answers); run `ctsurv review update` to refresh it "
                    "(decisions are kept, a backup is made)", paths[0], summary.new, summary.changed)
    return summary


def load_reviews(workbooks: Mapping[str | None, Path], answers: pd.DataFrame,
                 parts: int = 1) -> tuple[pd.DataFrame | None, dict[str, WorkbookInfo]]:
    """Validate every existing clinician workbook and stack their rows.

    Returns:
        ``(rows, infos)``: rows of :func:`~ctsurv.review.validate.load_review` plus
        ``workbook`` (path); a reviewer's own workbook fills an empty ``reviewer`` cell with
        the reviewer's name.  None when no workbook exists.
    """
    frames, infos = [], {}
    for reviewer, path in ((r, p) for r, base in workbooks.items() for p in part_paths(base, parts)):
        if not path.exists():
            continue
        rows = load_review(path, answers)
        if reviewer is not None:
            rows["reviewer"] = pd.Series([r if r is not None else reviewer for r in rows["reviewer"]], index=rows.index, dtype=object)
        rows["workbook"] = str(path)
        frames.append(rows)
        infos[str(path)] = workbook_info(path)
    return (pd.concat(frames, ignore_index=True) if frames else None), infos


def current_review(answers: str | Path, workbooks: Mapping[str | None, Path], parts: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Final and audit tables as ``apply_review`` would write them now (nothing written)."""
    table = pd.read_parquet(answers)
    review, infos = load_reviews(workbooks, table, parts)
    return apply_review(table, review, infos)


def run_apply(answers: str | Path, workbooks: Mapping[str | None, Path], final_out: str | Path, audit_out: str | Path,
              parts: int = 1) -> pd.DataFrame:
    """Validate the clinician workbooks (if any; every part) and write the final and audit tables."""
    final, audit = current_review(answers, workbooks, parts)
    files = [p for base in workbooks.values() for p in part_paths(base, parts)]
    if not any(p.exists() for p in files):
        log.info("no clinician workbook at %s: final answers equal the extracted ones", ", ".join(map(str, files)))
    for path in (final_out, audit_out):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    final.to_parquet(final_out, index=False)
    audit.to_parquet(audit_out, index=False)
    log.info("final answers: %s; %d audit rows", final["decision"].value_counts().to_dict(), len(audit))
    return final
