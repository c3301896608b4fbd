"""The review steps on files, as the workflow scripts and the command line run them."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..extraction.questions import load_questions
from .apply import apply_review
from .audit import workbook_info
from .clinician import publish_export
from .validate import load_review
from .workbook import ExportSummary, export_workbook

log = logging.getLogger(__name__)


def read_reports(cohort: str | Path) -> pd.DataFrame:
    """``study_id, report`` of a cohort table."""
    table = pd.read_parquet(cohort, columns=["study_id", "report"])
    table["study_id"] = table["study_id"].astype(str)
    return table


def run_export(answers: str | Path, cohort: str | Path, questions: str | Path, out: str | Path, clinician: str | Path) -> ExportSummary:
    """Export ``out`` carrying decisions over from the clinician workbook; create that workbook if absent."""
    clinician = Path(clinician)
    summary = export_workbook(pd.read_parquet(answers), read_reports(cohort), load_questions(questions), out, previous=clinician)
    log.info("exported %s: %d rows, %d decisions carried over, %d changed answers, %d new rows, %d reviewed rows dropped",
             out, summary.rows, summary.carried, summary.changed, summary.new, summary.dropped)
    if publish_export(out, clinician):
        log.info("created the clinician workbook %s", clinician)
    elif summary.new or summary.changed:
        log.warning("%s is out of date (%d new rows, %d changed answers); run `ctsurv review update` to refresh it "
                    "(decisions are kept, a backup is made)", clinician, summary.new, summary.changed)
    return summary


def run_apply(answers: str | Path, clinician: str | Path, final_out: str | Path, audit_out: str | Path) -> pd.DataFrame:
    """Validate the clinician workbook (if any) and write the final and audit tables."""
    table = pd.read_parquet(answers)
    clinician = Path(clinician)
    if clinician.exists():
        review = load_review(clinician, table)
        final, audit = apply_review(table, review, workbook_info(clinician))
    else:
        log.info("no clinician workbook at %s: final answers equal the extracted ones", clinician)
        final, audit = apply_review(table, None)
    for path in (final_out, audit_out):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    final.to_parquet(final_out, index=False)
    audit.to_parquet(audit_out, index=False)
    log.info("final answers: %s", final["decision"].value_counts().to_dict())
    return final


def current_review(answers: str | Path, clinician: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Final and audit tables as ``apply_review`` would write them now (nothing written)."""
    table = pd.read_parquet(answers)
    clinician = Path(clinician)
    if not clinician.exists():
        return apply_review(table, None)
    return apply_review(table, load_review(clinician, table), workbook_info(clinician))
