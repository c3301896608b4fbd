"""Gold answers: what a faithful reader of each report answers to the six questions.

One :class:`GoldAnswer` per (study, question).  ``answer`` is the report's own wording of
the topic (the sentence or sentences about it, joined by a space), or
:data:`~ctsurv.extraction.base.NOT_MENTIONED` when the report says nothing about it.
``present`` is True only for a positive finding: a negated topic ("No pleural effusion.")
has its sentence as the answer and ``present`` False.  ``size_mm`` is the largest size the
answer states, in mm (None when it states none); ``location`` the canonical names of
the places it states, joined by "; " (lobe, nodal region, organ, vessel, vertebra).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..extraction.base import NOT_MENTIONED

QUESTION_IDS = ("primary_tumor", "lymph_nodes", "pleura", "metastases", "vessels", "bones")
GOLD_COLUMNS = ["study_id", "question_id", "answer", "present", "size_mm", "location"]


@dataclass(frozen=True)
class GoldAnswer:
    question_id: str
    answer: str
    present: bool
    size_mm: float | None = None
    location: str | None = None


def not_mentioned(question_id: str) -> GoldAnswer:
    return GoldAnswer(question_id, NOT_MENTIONED, False, None, None)


def gold_frame(rows: list[tuple[str, GoldAnswer]]) -> pd.DataFrame:
    """The gold table: one row per (study_id, answer), columns :data:`GOLD_COLUMNS`."""
    frame = pd.DataFrame(
        [(sid, g.question_id, g.answer, g.present, g.size_mm, g.location) for sid, g in rows],
        columns=GOLD_COLUMNS,
    )
    frame["present"] = frame["present"].astype(bool)
    frame["size_mm"] = frame["size_mm"].astype("float64")
    frame["location"] = frame["location"].astype("string")
    frame["answer"] = frame["answer"].astype("string")
    return frame
