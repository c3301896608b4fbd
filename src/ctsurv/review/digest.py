"""A content digest of a review workbook, for Snakemake's ``params`` re-run trigger.

Snakemake re-runs a job when an input file is newer and its checksum differs; saving a
workbook in Excel changes its bytes (timestamps inside the zip) even when no cell changed.
So ``apply_review`` does not take the workbook as an input file: it takes this digest as a
parameter, and Snakemake re-runs it exactly when the digest changes (and on
``--forcerun apply_review``).

The digest covers what the review means: rows where a clinician typed something or a
locked cell differs from the export, and the row count.  A workbook nobody has touched
has the same digest as no workbook (:data:`NO_REVIEW`), so creating the clinician's copy
re-runs nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .layout import COLUMNS, EDITABLE, ORIGINAL_SHEET, READ_ONLY, REVIEW_SHEET

NO_REVIEW = "no-review"


def review_digest(path: str | Path) -> str:
    """``NO_REVIEW`` for an absent or untouched workbook, else a sha256 of its review content.

    Never raises: a file openpyxl cannot parse gets the hash of its bytes, so that
    ``apply_review`` runs and reports the problem.
    """
    import openpyxl

    path = Path(path)
    if not path.exists():
        return NO_REVIEW
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=False)
        try:
            cells = [list(r) for r in book[REVIEW_SHEET].iter_rows(values_only=True)]
            original = [list(r) for r in book[ORIGINAL_SHEET].iter_rows(values_only=True)]
        finally:
            book.close()
    except Exception:
        return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()
    editable = [COLUMNS.index(name) for name in EDITABLE]
    locked = [COLUMNS.index(name) for name in READ_ONLY]
    touched = []
    rows = [r for r in cells if any(v is not None for v in r)]
    for i, row in enumerate(rows):
        row = row + [None] * (len(COLUMNS) - len(row))
        exported = original[i] if i < len(original) else None
        if i == 0:
            same, typed = tuple(row[: len(COLUMNS)]) == COLUMNS, False
        else:
            same = exported is not None and [row[j] for j in locked] == list(exported[: len(READ_ONLY)])
            typed = any(row[j] is not None for j in editable)
        if not same or typed:
            touched.append([i, [str(v) if v is not None else None for v in row]])
    if not touched and len(rows) == len(original):
        return NO_REVIEW
    blob = json.dumps({"rows": len(rows), "touched": touched}, sort_keys=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def cached_review_digest(path: str | Path, cache: str | Path) -> str:
    """:func:`review_digest`, recomputed only when the file's size or mtime changed.

    Snakemake evaluates the digest every time it builds the DAG; reading a workbook of
    thousands of rows takes seconds, so the last digest is kept in ``cache`` (JSON) with
    the file's size and mtime.
    """
    path, cache = Path(path), Path(cache)
    if not path.exists():
        return NO_REVIEW
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} == key:
            return saved["digest"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = review_digest(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.write_text(json.dumps({**key, "digest": digest}), encoding="utf-8")
    tmp.replace(cache)
    return digest


def review_digests(review_config, dataset: str, cache_dir: str | Path) -> str:
    """One string for all clinician workbooks of ``dataset`` (``reviewer=digest; ...``).

    The value of apply_review's ``digest`` param; caches live in ``cache_dir``.
    """
    from .clinician import clinician_workbooks

    from .workbook import part_paths

    n = int(review_config.get("parts") or 1)
    parts = []
    for reviewer, base in clinician_workbooks(review_config, dataset).items():
        for k, path in enumerate(part_paths(base, n), start=1):
            label = ".".join(x for x in (reviewer, f"part{k}-of-{n}" if n > 1 else None) if x)
            cache = Path(cache_dir) / (f"digest.{label}.json" if label else "digest.json")
            digest = cached_review_digest(path, cache)
            parts.append(f"{label}={digest}" if label else digest)
    return "; ".join(parts)
