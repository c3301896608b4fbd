"""The OpenAI-compatible client against a real HTTP server process on loopback (tests/replay_server.py)."""

from __future__ import annotations

import json
import time

import pytest

from ctsurv.errors import CtsurvError
from ctsurv.extraction.base import NOT_MENTIONED, Question
from ctsurv.extraction.openai_client import OpenAIBackend
from ctsurv.extraction.prompt import answer_schema

from replay_server import fetch_json, free_port, running

QUESTIONS = [
    Question("pleura", "Is there pleural involvement or pleural effusion?"),
    Question("bones", "Are there skeletal or bone changes?"),
]
GOOD = {"pleura": "Small left pleural effusion.", "bones": "Not mentioned"}


def backend(url, **kwargs):
    opts = dict(timeout_s=5.0, retries=2, backoff_s=0.01, max_tokens=64, concurrency=4, progress=False)
    opts.update(kwargs)
    return OpenAIBackend(url, **opts)


def test_success_one_request_per_report_with_schema_in_the_user_turn(tmp_path):
    script = {"model": "mistral-test", "rules": [{"match": "REPORT-A", "responses": [{"answers": GOOD}]}]}
    with running(script, tmp_path) as url:
        be = backend(url)  # model name taken from /v1/models
        got = be.extract(["REPORT-A: small left pleural effusion.", "REPORT-B: normal."], QUESTIONS)
        seen = fetch_json(url + "/_requests")["requests"]
    assert be.name == "openai:mistral-test"
    assert [(a.question_id, a.answer, a.status, a.error) for a in got[0]] == [
        ("pleura", "Small left pleural effusion.", "ok", None),
        ("bones", NOT_MENTIONED, "not_mentioned", None),
    ]
    # the default reply fills every schema key with "Not mentioned"
    assert [a.status for a in got[1]] == ["not_mentioned", "not_mentioned"]
    assert len(seen) == 2  # one request per report, not one per question
    for body in seen:
        assert body["model"] == "mistral-test"
        assert body["temperature"] == 0
        assert body["max_tokens"] == 64
        assert [m["role"] for m in body["messages"]] == ["user"]  # no system role (Mistral)
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == answer_schema(QUESTIONS)
        assert all(q.text in body["messages"][0]["content"] for q in QUESTIONS)


def test_per_question_mode_sends_one_request_per_question(tmp_path):
    with running({}, tmp_path) as url:
        got = backend(url, model="m", mode="per_question").extract(["r1", "r2", "r3"], QUESTIONS)
        seen = fetch_json(url + "/_requests")["requests"]
    assert len(seen) == 3 * len(QUESTIONS)
    assert sorted(len(b["response_format"]["json_schema"]["schema"]["properties"]) for b in seen) == [1] * 6
    assert [[a.question_id for a in row] for row in got] == [["pleura", "bones"]] * 3


def test_truncated_replies_are_retried_with_more_tokens_and_malformed_ones_are_not_retried(tmp_path):
    """At temperature 0 the same request gives the same reply: a retry must change something."""
    script = {
        "rules": [
            # cut at max_tokens once: the retry has twice the tokens and succeeds
            {"match": "LONG", "responses": [{"content": '{"pleura": "eff', "finish_reason": "length"}, {"answers": GOOD}]},
            # whitespace until max_tokens, every time
            {"match": "RUNAWAY", "responses": [{"content": '{"pleura": "effusion",      ', "finish_reason": "length"}]},
            # malformed: sent again it would be malformed again (the script would answer, a server would not)
            {"match": "BROKEN", "responses": [{"content": "Sure! Here are the answers: pleura yes"}, {"answers": GOOD}]},
            # a JSON object missing a key
            {"match": "PARTIAL", "responses": [{"answers": {"pleura": "effusion"}}, {"answers": GOOD}]},
        ]
    }
    reports = ["LONG report", "RUNAWAY report", "BROKEN report", "PARTIAL report", "fine report"]
    with running(script, tmp_path) as url:
        got = backend(url, model="m", retries=2, max_tokens=64).extract(reports, QUESTIONS)
        seen = fetch_json(url + "/_requests")["requests"]
    long, runaway, broken, partial, fine = got
    tokens = {r: [b["max_tokens"] for b in seen if r in b["messages"][0]["content"]] for r in reports}
    assert tokens == {"LONG report": [64, 128], "RUNAWAY report": [64, 128, 256], "BROKEN report": [64],
                      "PARTIAL report": [64], "fine report": [64]}
    assert [a.answer for a in long] == ["Small left pleural effusion.", NOT_MENTIONED]
    assert all(a.status == "failed" and a.answer == "" for a in runaway + broken + partial)
    assert runaway[0].error == "truncated: the reply reached max_tokens=256 (finish_reason=length) (after 3 attempts)"
    assert broken[0].error.startswith("invalid JSON") and "attempt" not in broken[0].error
    assert "lacks the question id(s) ['bones']" in partial[0].error
    assert [a.status for a in fine] == ["not_mentioned", "not_mentioned"]
    # reasons never quote the reply or the report
    assert "pleura yes" not in broken[0].error and "BROKEN" not in broken[0].error


def test_the_server_fingerprint_names_the_served_model_and_its_revision(tmp_path):
    with running({"model": "mistral-test"}, tmp_path) as url:
        plain = backend(url).fingerprint
        named = backend(url, model="mistral-test").fingerprint
    with running({"model": "mistral-test", "revision": "abc123"}, tmp_path) as url:
        revised = backend(url).fingerprint
    assert plain == named and "mistral-test" in plain
    assert revised != plain and "abc123" in revised


def test_http_500_503_retried_with_backoff_and_400_not_retried(tmp_path):
    script = {
        "rules": [
            {"match": "BUSY", "responses": [{"status": 503}, {"status": 500}, {"answers": GOOD}]},
            {"match": "DOWN", "responses": [{"status": 503}]},
            {"match": "TOOLONG", "responses": [{"status": 400, "message": "maximum context length is 8192 tokens"}]},
        ]
    }
    with running(script, tmp_path) as url:
        be = backend(url, model="m", retries=2, backoff_s=0.2, concurrency=1)
        start = time.monotonic()
        busy = be.extract(["BUSY"], QUESTIONS)[0]
        waited = time.monotonic() - start
        down, toolong = be.extract(["DOWN", "TOOLONG"], QUESTIONS)
        seen = fetch_json(url + "/_requests")["requests"]
    assert [a.status for a in busy] == ["ok", "not_mentioned"]
    assert waited >= 0.2 + 0.4  # back-off 0.2 s, then 0.4 s
    assert down[0].status == "failed" and down[0].error == "HTTP 503 (after 3 attempts)"
    assert toolong[1].status == "failed" and toolong[1].error.startswith("HTTP 400: ")
    assert "maximum context length" in toolong[1].error
    counts = {m: sum(m in b["messages"][0]["content"] for b in seen) for m in ("BUSY", "DOWN", "TOOLONG")}
    assert counts == {"BUSY": 3, "DOWN": 3, "TOOLONG": 1}


def test_timeouts_are_retried(tmp_path):
    script = {
        "rules": [
            {"match": "SLOW-ONCE", "responses": [{"sleep": 3.0, "answers": GOOD}, {"answers": GOOD}]},
            {"match": "HUNG", "responses": [{"sleep": 3.0, "answers": GOOD}]},
        ]
    }
    with running(script, tmp_path) as url:
        slow, hung = backend(url, model="m", timeout_s=0.5, retries=1).extract(["SLOW-ONCE", "HUNG"], QUESTIONS)
    assert [a.status for a in slow] == ["ok", "not_mentioned"]
    assert hung[0].status == "failed" and hung[0].error == "no reply within 0.5 s (after 2 attempts)"


def test_connection_refused_fails_every_report_with_the_reason():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    be = backend(url, model="m", retries=1)
    got = be.extract(["r1", "r2"], QUESTIONS)
    assert {a.status for row in got for a in row} == {"failed"}
    assert got[0][0].error.startswith("connection failed (") and got[0][0].error.endswith("(after 2 attempts)")
    with pytest.raises(CtsurvError, match="cannot list the models served"):
        OpenAIBackend(url)  # no model name and no server to ask


def test_requests_run_concurrently_up_to_the_limit(tmp_path):
    with running({"latency_s": 0.3}, tmp_path) as url:
        backend(url, model="m", concurrency=4).extract([f"r{i}" for i in range(8)], QUESTIONS)
        stats = fetch_json(url + "/_requests")
    assert len(stats["requests"]) == 8
    assert 2 <= stats["max_in_flight"] <= 4


def test_reply_in_a_code_fence_and_not_mentioned_variants(tmp_path):
    fenced = "```json\n" + json.dumps({"pleura": "not mentioned.", "bones": "  Lytic   lesion of T5. "}) + "\n```"
    with running({"default": {"content": fenced}}, tmp_path) as url:
        (row,) = backend(url, model="m", structured=False).extract(["r"], QUESTIONS)
        (body,) = fetch_json(url + "/_requests")["requests"]
    assert "response_format" not in body
    assert [(a.answer, a.status) for a in row] == [(NOT_MENTIONED, "not_mentioned"), ("Lytic lesion of T5.", "ok")]
