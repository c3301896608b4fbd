"""The contract every extraction backend follows.

A backend answers *all* questions for a batch of reports; it never raises for one bad
report: a report it could not answer gets ``status="failed"`` with the reason in ``error``
and the other reports keep their answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

NOT_MENTIONED = "Not mentioned"
STATUSES = ("ok", "not_mentioned", "failed")


@dataclass(frozen=True)
class Question:
    id: str
    text: str


@dataclass(frozen=True)
class Answer:
    question_id: str
    answer: str
    status: str  # one of STATUSES
    error: str | None = None


class Backend(Protocol):
    #: recorded in the answers table's ``extractor`` column, e.g. "rules" or "openai:mistral-7b-instruct-v0.2"
    name: str
    #: bump when the prompt or the answer logic changes; part of the cache key
    prompt_version: str
    #: what the answers come from beyond ``name`` (weights, served revision, rules source);
    #: part of the cache key, see :mod:`ctsurv.extraction.fingerprint`
    fingerprint: str

    def extract(self, reports: Sequence[str], questions: Sequence[Question]) -> list[list[Answer]]:
        """One list per report, answers in the order of ``questions``."""
        ...
