"""Answers for a report table: cached, resumable, sharded; and the merge of the shards.

:func:`extract_answers` answers the reports of one shard in batches of ``batch_size``.
Reports found in the cache (:mod:`.cache`) are not sent again, each finished batch is added
to the cache, so re-running after new reports arrive -- or after the job was killed --
processes only what is missing.  A study belongs to shard ``hash(study_id) mod n``, so a
study keeps its shard when reports are added.  Studies without report text are left out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..atomic import atomic_path
from ..data.tables import load_table
from ..errors import CtsurvError, DataError
from ..shards import shard_of
from .base import STATUSES, Answer, Backend, Question
from .cache import AnswerCache, cache_key, model_id
from .prompt import prompt_hash

log = logging.getLogger(__name__)

ANSWER_COLUMNS = ["study_id", "question_id", "answer", "status", "error", "extractor", "prompt_hash"]


def _check_table(df: pd.DataFrame, id_column: str, text_column: str, source: str) -> None:
    for column in (id_column, text_column):
        if column not in df.columns:
            raise DataError(f"{source}: no column '{column}'; the columns are {list(df.columns)}")
    ids = df[id_column]
    missing = ids.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise DataError(f"{source}, row {missing[0] + 2}, column '{id_column}': empty study id; every report needs one")
    dup = ids.astype(str).duplicated(keep=False).to_numpy().nonzero()[0]
    if len(dup):
        rows = ", ".join(str(i + 2) for i in dup[:5])
        raise DataError(
            f"{source}, column '{id_column}': study '{ids.iloc[dup[0]]}' appears more than once (rows {rows}); "
            "ids must be unique"
        )


def extract_answers(
    reports_df: pd.DataFrame,
    id_column: str,
    text_column: str,
    backend: Backend,
    questions: Sequence[Question],
    cache_dir: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 64,
    source: str = "reports",
    progress: bool = True,
) -> pd.DataFrame:
    """Answer ``questions`` for every report of one shard.

    Args:
        reports_df: one row per study.
        id_column: column of unique study ids (written as ``study_id``).
        text_column: column of report text; empty or missing text -> the study is left out.
        backend: answers batches of reports (rules, transformers, openai).
        questions: the questions, in output order.
        cache_dir: answer cache folder; None disables caching.
        shard: (i, n): this call answers the studies with ``shard_of(id, n) == i``.
        batch_size: reports per backend call and per cache file (what a kill can lose).
        source: the table's name in error messages (e.g. its path).
        progress: show a progress bar over batches.

    Returns:
        The answers table: ``ANSWER_COLUMNS``, one row per (study, question), studies in
        table order.

    Raises:
        DataError: a column is missing or the ids are empty or not unique.
        CtsurvError: every report of the shard failed (the server is down or misconfigured);
            the first reason is in the message.
    """
    from tqdm.auto import tqdm

    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise CtsurvError(f"shard {i} of {n}: expected 0 <= shard < n")
    _check_table(reports_df, id_column, text_column, source)
    ids = reports_df[id_column].astype(str).tolist()
    texts = reports_df[text_column].tolist()
    todo = [
        (sid, text)
        for sid, text in zip(ids, texts)
        if shard_of(sid, n) == i and isinstance(text, str) and text.strip()
    ]
    n_empty = sum(1 for sid, t in zip(ids, texts) if shard_of(sid, n) == i and not (isinstance(t, str) and t.strip()))
    if n_empty:
        log.info("%d studies of shard %d/%d have no report text and are left out", n_empty, i, n)
    from ..data.tables import text_count

    if texts and not text_count(texts)[0]:
        log.warning("%s, column '%s': all %d report texts are empty, so there are no answers; check the column "
                    "(the dataset's 'report' column) and the reports", source, text_column, len(texts))

    p_hash = prompt_hash(questions, backend.prompt_version)
    model = model_id(backend)
    keys = [cache_key(text, p_hash, model) for _, text in todo]
    cache = AnswerCache(cache_dir) if cache_dir is not None else None
    answers: dict[str, list[Answer]] = cache.lookup(keys) if cache else {}
    pending = [(sid, text, key) for (sid, text), key in zip(todo, keys) if key not in answers]
    log.info(
        "shard %d/%d: %d reports, %d from the cache, %d to answer with %s",
        i, n, len(todo), len(todo) - len(pending), len(pending), backend.name,
    )
    batches = [pending[s : s + batch_size] for s in range(0, len(pending), batch_size)]
    for batch in tqdm(batches, desc="batches", unit="batch", disable=not progress or not batches):
        got = backend.extract([text for _, text, _ in batch], questions)
        if len(got) != len(batch) or any([a.question_id for a in row] != [q.id for q in questions] for row in got):
            raise CtsurvError(f"backend {backend.name} returned answers that do not match the reports and questions")
        fresh = {key: row for (_, _, key), row in zip(batch, got)}
        answers.update(fresh)
        if cache:
            cache.add(fresh)

    rows = []
    for (sid, _), key in zip(todo, keys):
        for a in answers[key]:
            rows.append((sid, a.question_id, a.answer, a.status, a.error, backend.name, p_hash))
    table = answers_frame(rows)
    failed = table[table["status"] == "failed"]
    if len(failed):
        n_failed = failed["study_id"].nunique()
        log.warning("%d of %d reports failed, e.g. study %s: %s", n_failed, len(todo), failed["study_id"].iloc[0], failed["error"].iloc[0])
        if n_failed == len(todo):
            raise CtsurvError(
                f"all {n_failed} reports of shard {i}/{n} failed with {backend.name}; "
                f"first reason (study '{failed['study_id'].iloc[0]}'): {failed['error'].iloc[0]}"
            )
    return table


def read_report_table(path: str | Path) -> pd.DataFrame:
    """Read a report table (``.csv``, ``.tsv`` or ``.parquet``), every CSV column as text."""
    return load_table(path, what="file")


def answers_frame(rows: Sequence[tuple] = ()) -> pd.DataFrame:
    """An answers table with the contract's columns and dtypes (string columns, nullable ``error``)."""
    df = pd.DataFrame(list(rows), columns=ANSWER_COLUMNS)
    return df.astype({c: "string" for c in ANSWER_COLUMNS})


def write_answers(df: pd.DataFrame, path: str | Path) -> None:
    """Write an answers table to Parquet atomically (a temporary file, then a rename)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_answers(path: str | Path) -> pd.DataFrame:
    """Read an answers table and check its columns and statuses."""
    df = pd.read_parquet(path)
    missing = [c for c in ANSWER_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: not an answers table, columns {missing} are missing")
    bad = ~df["status"].isin(STATUSES)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{path}, row {row + 2}, column 'status': {df['status'].iloc[row]!r} is not one of {STATUSES}")
    return df[ANSWER_COLUMNS].astype({c: "string" for c in ANSWER_COLUMNS})


def merge_shards(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Join shard answer tables into one; a (study, question) in two shards is an error."""
    frames = [read_answers(p) for p in paths]
    merged = pd.concat(frames, ignore_index=True) if frames else answers_frame()
    dup = merged.duplicated(["study_id", "question_id"], keep=False)
    if dup.any():
        sid = merged.loc[dup, "study_id"].iloc[0]
        where = [str(p) for p, f in zip(paths, frames) if (f["study_id"] == sid).any()]
        raise DataError(f"study '{sid}' is answered in more than one shard ({', '.join(where)}); re-run the extraction")
    return merged.sort_values(["study_id"], kind="stable").reset_index(drop=True)
