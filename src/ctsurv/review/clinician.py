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

from ..errors import ConfigError, DataError
from ..extraction.base import Question
from .layout import COLUMNS, REVIEW_SHEET
from .workbook import ExportSummary, export_workbook, save_atomic

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
        paths = {None: clinician_path(template, dataset)}
    else:
        paths = {name: Path(template.format(dataset=dataset, reviewer=name)) for name in reviewers}
    for path in paths.values():
        check_workbook_path(path)
    return paths


#: Formats a spreadsheet program offers in "Save As"; ctsurv reads only the ``.xlsx``.
OTHER_FORMATS = (".csv", ".tsv", ".xls", ".xlsm", ".xlsb", ".ods", ".numbers", ".txt")


def check_workbook_path(path: str | Path) -> None:
    """The one check of a clinician workbook path, made by every reader (status, update, export, apply).

    Raises:
        DataError: the path is a folder; or the workbook was saved in another format beside
            it (``reviews/demo_lung.csv`` newer than ``reviews/demo_lung.xlsx``, or no
            ``.xlsx`` at all): its decisions would be ignored without a word.  An older copy
            in another format only gets a warning.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"review workbook {path}: is a folder, not a workbook file; move the folder away, or set "
                        "review.workbook to an .xlsx path (e.g. reviews/{dataset}.xlsx)")
    mtime = path.stat().st_mtime if path.is_file() else None
    for suffix in OTHER_FORMATS:
        for other in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if not other.is_file():
                continue
            if mtime is None or other.stat().st_mtime > mtime:
                raise DataError(
                    f"review workbook {path}: the decisions seem to have been saved as {other.name} beside it "
                    f"({'no ' + path.name + ' exists' if mtime is None else other.name + ' is newer'}), and ctsurv reads "
                    f"only {path.name}. Open {other.name} in the spreadsheet program, save it as an Excel workbook "
                    f"(.xlsx) under {path.name}, then move {other.name} out of {path.parent}")
            log.warning("%s: an older %s lies beside it; ctsurv reads only %s (move %s away to silence this)",
                        path, other.name, path.name, other.name)
            break


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


def added_columns(path: str | Path) -> tuple[list[str], dict[tuple[str, str], list]]:
    """Columns a clinician added to the review sheet after the exported ones (e.g. ``notes``).

    Returns:
        ``(names, values)``: the added headers (an unnamed column with values is called
        ``column <letter>``) and, per (study_id, question_id), that row's values.
    """
    import openpyxl
    from openpyxl.utils import get_column_letter

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if REVIEW_SHEET not in book.sheetnames:
            return [], {}
        rows = [list(r) for r in book[REVIEW_SHEET].iter_rows(values_only=True)]
    finally:
        book.close()
    if not rows:
        return [], {}
    width = max(len(r) for r in rows)
    first = len(COLUMNS)
    used = [c for c in range(first, width) if any(c < len(r) and r[c] not in (None, "") for r in rows)]
    if not used:
        return [], {}
    header = rows[0]
    names = [str(header[c]) if c < len(header) and header[c] not in (None, "") else f"column {get_column_letter(c + 1)}"
             for c in used]
    values = {}
    for r in rows[1:]:
        if len(r) > 1 and r[0] is not None:
            values[(str(r[0]), str(r[1]))] = [r[c] if c < len(r) else None for c in used]
    return names, values


def _put_back_columns(path: Path, names: list[str], values: dict) -> int:
    """Append the clinician's added columns to the fresh workbook, matched by (study, question);
    returns how many rows had values that no longer have a row."""
    import openpyxl
    from openpyxl.styles import Font, Protection

    book = openpyxl.load_workbook(path)
    sheet = book[REVIEW_SHEET]
    first = len(COLUMNS) + 1
    for j, name in enumerate(names):
        cell = sheet.cell(row=1, column=first + j, value=name)
        cell.font = Font(bold=True)
    placed = set()
    for r in range(2, sheet.max_row + 1):
        key = (str(sheet.cell(row=r, column=1).value), str(sheet.cell(row=r, column=2).value))
        row = values.get(key)
        for j in range(len(names)):
            cell = sheet.cell(row=r, column=first + j, value=None if row is None else row[j])
            cell.protection = Protection(locked=False)
        if row is not None:
            placed.add(key)
    save_atomic(book, path)
    return sum(1 for key, row in values.items() if key not in placed and any(v not in (None, "") for v in row))


def update_clinician_workbook(
    answers: pd.DataFrame, reports: pd.DataFrame, questions: Sequence[Question], clinician: str | Path
) -> tuple[ExportSummary, Path | None]:
    """Replace the clinician workbook with a fresh export carrying its decisions over.

    The old workbook is copied to ``<folder>/backup/<name>.<timestamp>.xlsx`` first; the new
    one is written beside it and renamed into place, so the clinician's file is never half
    written.  Columns the clinician added after the exported ones (notes) are kept, matched
    by (study, question), and named in the log.

    Returns:
        ``(summary, backup)``; backup is None when there was no workbook before.

    Raises:
        DataError: the path is a folder, the workbook was saved in another format beside it
            (:func:`check_workbook_path`), or it cannot be carried over (damaged, an invalid
            decision; the message names the workbook): it is left as it was and no backup
            (or backup folder) is left behind.
    """
    clinician = Path(clinician)
    check_workbook_path(clinician)
    backup = made_folder = None
    names, values = added_columns(clinician) if clinician.is_file() else ([], {})
    if clinician.exists():
        backup = backup_path(clinician)
        made_folder = not backup.parent.exists()
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clinician, backup)
    try:
        # read the decisions from the clinician's own file, so that an error names it
        summary = export_workbook(answers, reports, questions, clinician, previous=clinician if backup else None)
    except BaseException:
        # the clinician's workbook was not replaced: a backup of it would only mislead
        if backup is not None:
            backup.unlink(missing_ok=True)
            if made_folder and not any(backup.parent.iterdir()):
                backup.parent.rmdir()
        raise
    if names:
        orphans = _put_back_columns(clinician, names, values)
        log.warning("%s: kept the column(s) %s added by hand%s", clinician, ", ".join(repr(n) for n in names),
                    f"; {orphans} row(s) with values there have no row any more (they are in the backup {backup})"
                    if orphans else "")
    log.info("%s: %d rows, %d decisions carried over, %d changed answers to review again, %d new rows, backup %s",
             clinician, summary.rows, summary.carried, summary.changed, summary.new, backup)
    return summary, backup
