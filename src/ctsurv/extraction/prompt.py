"""The extraction prompt: all questions of one report in one request, answered as JSON.

One request per report (not one per question) means the server reads -- prefills -- each
report once.  The instructions go in the *user* turn because Mistral-Instruct chat templates
reject a system role.  The answer is a JSON object with one string per question id; the
JSON schema (:func:`answer_schema`) is sent to servers that constrain decoding to it
(``response_format={"type": "json_schema", ...}``), and :func:`parse_answers` checks every
reply, constrained or not, the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Sequence

from .base import NOT_MENTIONED, Answer, Question

#: Bump when the wording below or the answer logic changes: it is part of the cache key.
PROMPT_VERSION = "qa-json-1"

_INSTRUCTIONS = """You extract findings from a CT radiology report.
Answer each question using only what the report states. Keep each answer short (one or two
sentences), reuse the report's own wording, and keep sizes and locations exactly as written.
If the report says nothing about a question, answer exactly "{not_mentioned}".
If the report states that a finding is absent, say so (for example "No pleural effusion.").

Questions:
{questions}

Reply with one JSON object and nothing else. Its keys are the question ids: {ids}.

Report:
\"\"\"
{report}
\"\"\""""


class AnswerFormatError(ValueError):
    """A reply that is not the JSON object the prompt asks for; the message says why."""


def answer_schema(questions: Sequence[Question]) -> dict:
    """JSON schema of the reply: an object with one string per question id, all required."""
    return {
        "type": "object",
        "properties": {q.id: {"type": "string"} for q in questions},
        "required": [q.id for q in questions],
        "additionalProperties": False,
    }


def build_prompt(report: str, questions: Sequence[Question]) -> str:
    """The user-turn text asking ``questions`` about ``report``."""
    lines = "\n".join(f"- {q.id}: {q.text}" for q in questions)
    ids = ", ".join(f'"{q.id}"' for q in questions)
    return _INSTRUCTIONS.format(not_mentioned=NOT_MENTIONED, questions=lines, ids=ids, report=report.strip())


def build_messages(report: str, questions: Sequence[Question]) -> list[dict]:
    """Chat messages for one report: a single user turn (no system role, see module docstring)."""
    return [{"role": "user", "content": build_prompt(report, questions)}]


def prompt_hash(questions: Sequence[Question], prompt_version: str) -> str:
    """16 hex digits identifying the prompt wording, the question set and the prompt version."""
    payload = json.dumps(
        {"template": _INSTRUCTIONS, "version": prompt_version, "questions": [[q.id, q.text] for q in questions]},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


_NOT_MENTIONED_RE = re.compile(r"^\W*(not mentioned|not stated|not reported|none mentioned)\W*$", re.IGNORECASE)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_answers(text: str, questions: Sequence[Question]) -> list[Answer]:
    """Check a reply and turn it into answers in the order of ``questions``.

    A reply may be wrapped in a Markdown code fence (small local models do that).  Answers
    that say the report is silent ("Not mentioned", "not stated.") get status
    ``not_mentioned`` and the canonical text :data:`NOT_MENTIONED`.

    Args:
        text: the model's reply.
        questions: the questions asked.

    Returns:
        One :class:`Answer` per question with status ``ok`` or ``not_mentioned``.

    Raises:
        AnswerFormatError: the reply is not a JSON object, misses a question id, or an
            answer is not a non-empty string.  The message never quotes the reply (it may
            echo report text).
    """
    fenced = _FENCE_RE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise AnswerFormatError(f"invalid JSON ({err.msg} at character {err.pos} of {len(body)})") from None
    if not isinstance(data, dict):
        raise AnswerFormatError(f"expected a JSON object, got a JSON {type(data).__name__}")
    missing = [q.id for q in questions if q.id not in data]
    if missing:
        raise AnswerFormatError(f"answer object lacks the question id(s) {missing}")
    answers = []
    for q in questions:
        value = data[q.id]
        if not isinstance(value, str) or not value.strip():
            raise AnswerFormatError(f"answer to '{q.id}' is not a non-empty string")
        value = " ".join(value.split())
        if _NOT_MENTIONED_RE.match(value):
            answers.append(Answer(q.id, NOT_MENTIONED, "not_mentioned"))
        else:
            answers.append(Answer(q.id, value, "ok"))
    return answers


def failed_answers(questions: Sequence[Question], reason: str) -> list[Answer]:
    """Every question of one report marked ``failed`` with ``reason``."""
    return [Answer(q.id, "", "failed", reason) for q in questions]
