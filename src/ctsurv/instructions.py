"""Visual instruction data: LLaVA-style conversations from the final (reviewed) answers.

A record is ``{id, image, study_id, conversations: [{from: human, value}, {from: gpt,
value}, ...]}`` (LLaVA's format; ``study_id`` and ``question_ids`` are extra keys that LLaVA
loaders ignore).  The first human turn is the study's clinical sentence, then the image
placeholder, then the question::

    "64 year-old male former smoker lung cancer patient, stage 1, ...\\n<image>\\nWhat is ...?"

because the paper places the clinical sentence *before* the image tokens (DESIGN.md); a
dataset without a sentence template gets LLaVA's plain ``"<image>\\nQuestion"``.  Later turns
of a multi-turn conversation carry the question only.

``mode="per_question"``: one conversation per (study, question); ``"per_study"``: one
multi-turn conversation per study, questions in the order of the questions file.
Rejected answers and failed extractions are left out; "Not mentioned" answers are kept
(they teach the model to say so).

``image`` is relative to the project (the folder the workflow runs in), with ``/``
separators: absolute paths break as soon as the results move to another machine or cluster
node.  A path outside the project becomes ``../...``; loaders key on ``study_id`` anyway.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePath
from typing import Callable, Mapping, Sequence

import pandas as pd

from .atomic import atomic_path
from .errors import DataError
from .extraction.base import Question
from .review.apply import usable_answers

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
MODES = ("per_question", "per_study")
SPLITS = ("train", "val", "test")


def first_prompt(sentence: str | None, question: str) -> str:
    """The first human turn: clinical sentence, image placeholder, question."""
    if sentence:
        return f"{sentence}\n{IMAGE_TOKEN}\n{question}"
    return f"{IMAGE_TOKEN}\n{question}"


def build_conversations(
    final: pd.DataFrame,
    cohort: pd.DataFrame,
    questions: Sequence[Question],
    spec: Mapping,
    mode: str = "per_question",
    sentence_fn: Callable[[Mapping, Mapping], str] | None = None,
    project_root: str | Path | None = None,
) -> dict[str, list[dict]]:
    """Conversation records per split.

    Args:
        final: final QA table (``study_id, question_id, answer, status, decision``).
        cohort: cohort table (``study_id, split, image`` and the clinical columns).
        questions: question templates; their order is the turn order.
        spec: the dataset's config entry (``clinical_sentence`` template, ``labels``).
        mode: ``per_question`` or ``per_study``.
        sentence_fn: ``(row, spec) -> str``; defaults to
            :func:`ctsurv.data.sentences.clinical_sentence`.
        project_root: image paths are written relative to it (default: the working
            directory, which is the project in a Snakemake run).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, records sorted by study id.

    Raises:
        DataError: for answers about studies missing from the cohort or unknown questions.
    """
    if mode not in MODES:
        raise DataError(f"review.conversations is {mode!r}; choose one of {', '.join(MODES)}")
    if sentence_fn is None and spec.get("clinical_sentence"):
        from .data.sentences import clinical_sentence as sentence_fn
    text = {q.id: q.text for q in questions}
    order = {q.id: i for i, q in enumerate(questions)}
    answers = usable_answers(final)
    unknown = sorted(set(answers["question_id"]) - set(text))
    if unknown:
        raise DataError(f"final answers use question ids {unknown} that are not in the questions file; re-run extraction or restore the questions")
    studies = cohort.assign(study_id=cohort["study_id"].astype(str)).set_index("study_id")
    missing = sorted(set(answers["study_id"].astype(str)) - set(studies.index))
    if missing:
        raise DataError(f"final answers name {len(missing)} studies missing from the cohort table, e.g. '{missing[0]}'; re-run ingest and extraction")

    root = Path(project_root) if project_root is not None else Path.cwd()
    out: dict[str, list[dict]] = {split: [] for split in SPLITS}
    answers = answers.assign(_order=answers["question_id"].map(order)).sort_values(["study_id", "_order"], kind="stable")
    for study_id, group in answers.groupby(answers["study_id"].astype(str), sort=True):
        row = studies.loc[study_id]
        sentence = sentence_fn(row, spec) if sentence_fn is not None else None
        split = str(row["split"])
        if split not in out:
            raise DataError(f"cohort table, study '{study_id}', column 'split': {split!r} is not one of {', '.join(SPLITS)}")
        turns = [(q, str(a)) for q, a in zip(group["question_id"], group["answer"])]
        base = {"image": project_relative(row["image"], root), "study_id": study_id}
        if mode == "per_question":
            for qid, answer in turns:
                conv = [{"from": "human", "value": first_prompt(sentence, text[qid])}, {"from": "gpt", "value": answer}]
                out[split].append({"id": f"{study_id}__{qid}", **base, "question_ids": [qid], "conversations": conv})
        else:
            conv = []
            for k, (qid, answer) in enumerate(turns):
                prompt = first_prompt(sentence, text[qid]) if k == 0 else text[qid]
                conv += [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]
            out[split].append({"id": study_id, **base, "question_ids": [q for q, _ in turns], "conversations": conv})
    log.info("conversations per split: %s (%d answers left out)", {k: len(v) for k, v in out.items()}, len(final) - len(answers))
    return out


def project_relative(image: str | os.PathLike, root: str | Path) -> str:
    """``image`` relative to ``root`` with ``/`` separators; a relative path is kept as it is."""
    path = PurePath(str(image))
    if path.is_absolute():
        path = PurePath(os.path.relpath(path, Path(root).absolute()))
    return path.as_posix()


def write_json(records: list[dict], path: str | Path) -> None:
    """Write records as a JSON list, via a temporary file and an atomic rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(records, fh, ensure_ascii=False, indent=1)
