"""The clinician's copy of the review workbook (``review.workbook`` in the config).

It lives outside ``results/`` so the workflow never deletes it; with ``review.reviewers``
listed, every reviewer has a workbook of their own.  The workflow creates it
once (:func:`publish_export`, when it does not exist yet) and never writes to it again;
:func:`update_clinician_workbook` (``ctsurv review update``) replaces it with a re-export
that carries every decision over, after a timestamped backup.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..errors import ConfigError
from ..extraction.base import Question
from .workbook import ExportSummary, export_workbook

log = logging.getLogger(__name__)


def clinician_path(template: str, dataset: str) -> Path:
    """The workbook path of ``dataset`` from the ``review.workbook`` template (one reviewer or a shared file)."""
    return Path(template.format(dataset=dataset))


def clinician_workbooks(review_config: Mapping, dataset: str) -> dict[str | None, Path]:
    """Reviewer -> workbook path of ``dataset``.

    With ``review.reviewers`` empty there is one workbook (key None) that any number of
    reviewers share (the ``reviewer`` column says who decided).  With reviewers listed,
    each has a workbook of their own (the template holds ``{reviewer}``) and
    ``apply_review`` merges them, listing disagreements as conflicts.

    Raises:
        ConfigError: when ``{reviewer}`` and ``review.reviewers`` do not go together.
    """
    template, reviewers = review_config["workbook"], list(review_config.get("reviewers") or [])
    has_placeholder = "{reviewer}" in template
    if reviewers and not has_placeholder:
        raise ConfigError(f"review.reviewers is set, so review.workbook must contain {{reviewer}} (e.g. 'reviews/{{dataset}}.{{reviewer}}.xlsx'), got {template!r}")
    if has_placeholder and not reviewers:
        raise ConfigError(f"review.workbook {template!r} contains {{reviewer}}: list the reviewers under review.reviewers")
    if not reviewers:
        return {None: clinician_path(template, dataset)}
    return {name: Path(template.format(dataset=dataset, reviewer=name)) for name in reviewers}


def publish_export(export: str | Path, clinician: str | Path) -> bool:
    """Copy a fresh export to the clinician's path if nothing is there yet.

    Returns:
        True when the copy was made; False when a clinician workbook already exists
        (it is left untouched).
    """
    clinician = Path(clinician)
    if clinician.exists():
        return False
    clinician.parent.mkdir(parents=True, exist_ok=True)
    tmp = clinician.with_name(f".{clinician.name}.tmp")
    shutil.copyfile(export, tmp)
    tmp.replace(clinician)
    return True


def backup_path(clinician: Path, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return clinician.parent / "backup" / f"{clinician.stem}.{stamp}{clinician.suffix}"


def update_clinician_workbook(
    answers: pd.DataFrame, reports: pd.DataFrame, questions: Sequence[Question], clinician: str | Path
) -> tuple[ExportSummary, Path | None]:
    """Replace the clinician workbook with a fresh export carrying its decisions over.

    The old workbook is copied to ``<folder>/backup/<name>.<timestamp>.xlsx`` first; the new
    one is written beside it and renamed into place, so the clinician's file is never half
    written.

    Returns:
        ``(summary, backup)``; backup is None when there was no workbook before.

    Raises:
        DataError: the workbook cannot be carried over (damaged, or an invalid decision);
            it is left as it was and no backup is left behind.
    """
    clinician = Path(clinician)
    backup = None
    if clinician.exists():
        backup = backup_path(clinician)
        made_folder = not backup.parent.exists()
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clinician, backup)
    try:
        summary = export_workbook(answers, reports, questions, clinician, previous=backup)
    except BaseException:
        # the clinician's workbook was not replaced: a backup of it would only mislead
        if backup is not None:
            backup.unlink(missing_ok=True)
            if made_folder and not any(backup.parent.iterdir()):
                backup.parent.rmdir()
        raise
    log.info("%s: %d rows, %d decisions carried over, %d changed answers to review again, %d new rows, backup %s",
             clinician, summary.rows, summary.carried, summary.changed, summary.new, backup)
    return summary, backup
