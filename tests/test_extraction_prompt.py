"""The one-request-per-report prompt, its JSON schema, its hash and reply validation."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ctsurv.extraction.base import NOT_MENTIONED, Question
from ctsurv.extraction.prompt import (
    AnswerFormatError,
    answer_schema,
    build_messages,
    parse_answers,
    prompt_hash,
)

QUESTIONS = [
    Question("primary_tumor", "What is the location and size of the primary lung tumor?"),
    Question("pleura", "Is there pleural involvement or pleural effusion?"),
]


def test_one_user_turn_holds_instructions_every_question_and_the_report():
    (msg,) = build_messages("  Right upper lobe mass, 3.2 cm.\n", QUESTIONS)
    assert msg["role"] == "user"
    text = msg["content"]
    for q in QUESTIONS:
        assert f"- {q.id}: {q.text}" in text
    assert f'"{NOT_MENTIONED}"' in text and '"primary_tumor", "pleura"' in text
    assert text.endswith('"""\nRight upper lobe mass, 3.2 cm.\n"""')


def test_schema_requires_exactly_one_string_per_question():
    schema = answer_schema(QUESTIONS)
    jsonschema.validate({"primary_tumor": "RUL, 3.2 cm", "pleura": "Not mentioned"}, schema)
    for bad in ({"primary_tumor": "x"}, {"primary_tumor": "x", "pleura": 3}, {"primary_tumor": "x", "pleura": "y", "z": "w"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_prompt_hash_changes_with_questions_wording_and_version():
    h = prompt_hash(QUESTIONS, "v1")
    assert len(h) == 16 and h == prompt_hash(list(QUESTIONS), "v1")
    assert h != prompt_hash(QUESTIONS, "v2")
    assert h != prompt_hash(QUESTIONS[:1], "v1")
    assert h != prompt_hash([QUESTIONS[0], Question("pleura", "Pleural effusion?")], "v1")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"primary_tumor": "RUL mass, 3.2 cm.", "pleura": "Not mentioned"}',
         [("RUL mass, 3.2 cm.", "ok"), (NOT_MENTIONED, "not_mentioned")]),
        ('```json\n{"primary_tumor": "not stated.", "pleura": "No pleural\\n effusion."}\n```',
         [(NOT_MENTIONED, "not_mentioned"), ("No pleural effusion.", "ok")]),
    ],
)
def test_replies_become_answers(reply, expected):
    got = parse_answers(reply, QUESTIONS)
    assert [(a.question_id, a.answer, a.status, a.error) for a in got] == [
        (q.id, ans, status, None) for q, (ans, status) in zip(QUESTIONS, expected)
    ]


@pytest.mark.parametrize(
    "reply, reason",
    [
        ('{"primary_tumor": "RUL', "invalid JSON (Unterminated string"),
        ('["RUL"]', "expected a JSON object, got a JSON list"),
        ('{"primary_tumor": "RUL"}', "lacks the question id(s) ['pleura']"),
        ('{"primary_tumor": "RUL", "pleura": "   "}', "answer to 'pleura' is not a non-empty string"),
        ('{"primary_tumor": "RUL", "pleura": null}', "answer to 'pleura' is not a non-empty string"),
        (json.dumps({"primary_tumor": "RUL"}) + " " * 50, "lacks the question id(s)"),
    ],
)
def test_bad_replies_raise_with_a_reason_that_does_not_quote_them(reply, reason):
    with pytest.raises(AnswerFormatError) as err:
        parse_answers(reply, QUESTIONS)
    assert reason in str(err.value)
    assert "RUL" not in str(err.value)
