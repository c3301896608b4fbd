"""The ``rules`` backend: deterministic answers from the report's sentences on each topic.

For each question the report's sentences (:mod:`.sentence_split`) that mention its topic
(:mod:`.topics`) are returned verbatim, joined, as the answer; a report silent on the topic
answers :data:`~ctsurv.extraction.base.NOT_MENTIONED`.  Negated sentences are kept ("No
pleural effusion." answers the effusion question with a no); whether a finding is *present*
is decided by :mod:`.negation`, which ranks the sentences when there are too many.

It is the demo default on CPU and the baseline the LLM backends must beat.  The names other
code imports from here (sentences, topics, presence) are re-exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import NOT_MENTIONED, Answer, Question
from .fingerprint import source_fingerprint
from .negation import answer_presence, sentence_affirms
from .sentence_split import report_sentences, split_sentences
from .topics import TOPICS, Topic, topic_for

__all__ = [
    "RulesBackend", "TOPICS", "Topic", "answer_presence", "report_sentences", "sentence_affirms",
    "split_sentences", "topic_for",
]

_HERE = Path(__file__).resolve().parent
#: the modules whose code decides the rules backend's answers
RULE_SOURCES = tuple(_HERE / name for name in ("rules.py", "sentence_split.py", "topics.py", "negation.py"))


class RulesBackend:
    """Deterministic keyword-and-negation extractor (see the module docstring).

    Args:
        max_sentences: at most this many sentences per answer; when more are on topic,
            sentences reporting a finding are kept before negated ones, in report order.
    """

    name = "rules"
    prompt_version = "rules-1"

    def __init__(self, max_sentences: int = 4):
        self.max_sentences = max_sentences
        # the rules are the model: an edited rule re-extracts (answer cache key)
        self.fingerprint = source_fingerprint(RULE_SOURCES, "rules-source") + f":max_sentences={max_sentences}"

    def answer(self, sentences: Sequence[str], question: Question) -> Answer:
        """Answer one question from a report already split into sentences."""
        topic = topic_for(question.id)
        hits = [(i, s) for i, s in enumerate(sentences) if topic.matches(s)]
        if not hits:
            return Answer(question.id, NOT_MENTIONED, "not_mentioned")
        if len(hits) > self.max_sentences:
            ranked = sorted(hits, key=lambda h: (not sentence_affirms(h[1], topic), h[0]))
            hits = sorted(ranked[: self.max_sentences])
        text = " ".join(s if s[-1] in ".!?" else s + "." for _, s in hits)
        return Answer(question.id, text, "ok")

    def extract(self, reports: Sequence[str], questions: Sequence[Question]) -> list[list[Answer]]:
        for q in questions:
            topic_for(q.id)  # a configuration problem, raised before any work
        out: list[list[Answer]] = []
        for report in reports:
            try:
                sentences = report_sentences(report) if isinstance(report, str) else []
                out.append([self.answer(sentences, q) for q in questions])
            except Exception as err:  # never let one report stop the batch
                out.append([Answer(q.id, "", "failed", f"{type(err).__name__}: {err}") for q in questions])
        return out
