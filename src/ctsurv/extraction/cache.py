"""An append-only answer cache: a folder of small Parquet files, one per finished batch.

An entry is keyed by the sha256 of (report text, prompt hash, model), so the same report
asked the same questions by the same model with the same prompt is answered once,
whichever dataset, shard or run it comes from.  The prompt hash
(:func:`~ctsurv.extraction.prompt.prompt_hash`) covers the instructions' text, the
questions and the prompt version, so editing the prompt re-extracts even when nobody bumps
the version; the model is the backend's name and fingerprint
(:mod:`~ctsurv.extraction.fingerprint`: config and weights of a folder, id and revision of
a served model), so other weights under the same name re-extract too.  Every batch is written to a
temporary name and renamed, so a killed job loses at most the batch in flight and never
leaves a half-written file; concurrent shards write distinct files (no locks, safe on
network file systems).  Only answered reports (``ok`` / ``not_mentioned``) are stored:
failed ones are tried again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

from ..atomic import atomic_path
from .base import Answer

_COLUMNS = ("key", "question_id", "answer", "status")


def cache_key(report: str, prompt_id: str, model_id: str) -> str:
    """sha256 (hex) of the report text, the prompt's hash and the model's identity."""
    payload = json.dumps([report, prompt_id, model_id], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def model_id(backend) -> str:
    """The model part of the cache key: the backend's name and its fingerprint."""
    return json.dumps([backend.name, getattr(backend, "fingerprint", None)])


class AnswerCache:
    """Answers per cache key, stored under ``folder``.

    Args:
        folder: the cache folder (created when missing).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("batch-*.parquet"))

    def lookup(self, keys: Iterable[str]) -> dict[str, list[Answer]]:
        """The cached answers of those ``keys`` that are in the cache (answers in stored order)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        wanted = pa.array(sorted(set(keys)), type=pa.string())
        found: dict[str, list[Answer]] = {}
        if len(wanted) == 0:
            return found
        for path in self.files():
            table = pq.read_table(path, columns=list(_COLUMNS))
            table = table.filter(pc.is_in(table["key"], value_set=wanted))
            seen_here: dict[str, list[Answer]] = {}
            for key, qid, answer, status in zip(*(table[c].to_pylist() for c in _COLUMNS)):
                seen_here.setdefault(key, []).append(Answer(qid, answer, status))
            found.update(seen_here)  # a later batch wins over an earlier one
        return found

    def add(self, entries: dict[str, Sequence[Answer]]) -> Path | None:
        """Store the answers of one batch in a new file; failed reports are left out.

        Returns:
            The file written, or None when nothing was worth storing.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [
            (key, a.question_id, a.answer, a.status)
            for key, answers in entries.items()
            if all(a.status != "failed" for a in answers)
            for a in answers
        ]
        if not rows:
            return None
        table = pa.table({c: pa.array([r[i] for r in rows], type=pa.string()) for i, c in enumerate(_COLUMNS)})
        # time first, so that name order is write order
        name = f"batch-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.folder / name) as tmp:
            pq.write_table(table, tmp)
        return self.folder / name
