"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, ...).

One request per report asks every question (see :mod:`.prompt`), with the answer object's
JSON schema as ``response_format`` so a server with structured output can only produce that
object.  Requests run concurrently (a thread pool of ``concurrency`` workers; match it to
the server's batch size, e.g. vLLM's ``--max-num-seqs``), at temperature 0 with a bounded
``max_tokens``.

What can go wrong, per request, and what happens:

* HTTP 429/500/502/503/504, a timeout, or a refused connection: retried up to ``retries``
  times with exponential back-off, then the report is ``failed`` with the reason.
* ``finish_reason == "length"`` (the reply was cut at ``max_tokens``; a known vLLM failure
  fills the JSON with whitespace until then): retried up to ``retries`` times with twice the
  ``max_tokens`` each time (64, 128, 256, ...), then ``failed`` with the reason.
* a reply that is not the answer object: ``failed`` at once.  At temperature 0 the same
  request gets the same reply, so sending it again would cost a request and change nothing.
* any other HTTP error (400: prompt longer than the context, ...): ``failed`` at once.

A failed report never stops the others.  Reasons name the problem, never the report text.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Sequence

from ..errors import CtsurvError
from .base import Answer, Question
from .fingerprint import server_fingerprint
from .prompt import PROMPT_VERSION, AnswerFormatError, answer_schema, build_messages, failed_answers, parse_answers

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the server is overloaded, restarting or briefly broken.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MODES = ("per_report", "per_question")


class _Retryable(Exception):
    """A transport problem; the request may succeed when sent again."""


class _Fatal(Exception):
    """A problem sending the request again will not fix."""


class _Truncated(Exception):
    """The reply was cut at ``max_tokens``: worth sending again with more tokens."""


class OpenAIBackend:
    """Answers from an OpenAI-compatible server.

    Args:
        url: base URL of the server, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added
            when missing).
        model: served model name; ``None`` asks the server (``/v1/models``) and takes the first.
        max_tokens: upper bound on the reply length in tokens.
        concurrency: requests in flight at once.
        timeout_s: seconds to wait for one reply.
        retries: extra attempts after a transport failure or a truncated reply (the latter
            with twice the ``max_tokens`` each time).
        backoff_s: first wait before a retry after a transport failure; doubles each time
            (at most 30 s).
        prompt_version: recorded in the cache key; bump when the prompt changes.
        structured: send the JSON schema as ``response_format`` (set False for servers
            without structured output; replies are validated either way).
        mode: ``per_report`` (one request asks all questions, the default) or
            ``per_question`` (one request per question; for the benchmark's comparison).
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        max_tokens: int = 512,
        concurrency: int = 16,
        timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 1.0,
        prompt_version: str = PROMPT_VERSION,
        structured: bool = True,
        mode: str = "per_report",
        progress: bool = True,
    ):
        from openai import OpenAI

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1") else base + "/v1"
        # The library's own retries are off: ours also cover truncated and malformed replies.
        self._client = OpenAI(base_url=self.url, api_key="EMPTY", timeout=timeout_s, max_retries=0)
        self._card: dict | None = None
        self.model = model or self._served_model()
        self._fingerprint: str | None = None
        self.max_tokens = max_tokens
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.prompt_version = prompt_version
        self.structured = structured
        self.mode = mode
        self.progress = progress
        self.name = f"openai:{self.model}"

    def _model_cards(self) -> list[dict]:
        try:
            models = self._client.models.list().data
        except Exception as err:
            raise CtsurvError(
                f"cannot list the models served at {self.url} ({type(err).__name__}); "
                "check that the server runs, or set extraction.model"
            ) from None
        return [m.model_dump() for m in models]

    def _served_model(self) -> str:
        cards = self._model_cards()
        if not cards:
            raise CtsurvError(f"the server at {self.url} serves no model; set extraction.model")
        self._card = cards[0]
        return cards[0]["id"]

    @property
    def fingerprint(self) -> str:
        """The served model's id, revision and root as the server lists them (answer-cache key).

        Asked once; a server that lists no card for the model gives the name alone (warned).
        """
        if self._fingerprint is None:
            card = self._card
            if card is None:
                try:
                    card = next((c for c in self._model_cards() if c.get("id") == self.model), None)
                except CtsurvError as err:
                    log.warning("%s; the answer cache keys on the model name '%s' alone", err, self.model)
                if card is None:
                    card = {"id": self.model}
            self._fingerprint = server_fingerprint(card)
        return self._fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str) -> None:
        # backend_session sets the served folder's own fingerprint (weights, not names)
        self._fingerprint = value

    # ------------------------------------------------------------------ one request

    def _request(self, report: str, questions: Sequence[Question], max_tokens: int) -> list[Answer]:
        """One chat completion answering ``questions``; raises _Retryable / _Truncated / _Fatal / AnswerFormatError."""
        import openai

        kwargs = {}
        if self.structured:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answers", "schema": answer_schema(questions), "strict": True},
            }
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=build_messages(report, questions),
                temperature=0,
                max_tokens=max_tokens,
                **kwargs,
            )
        except openai.APITimeoutError:
            raise _Retryable(f"no reply within {self.timeout_s:g} s") from None
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise _Retryable(f"connection failed ({type(cause).__name__})") from None
        except openai.APIStatusError as err:
            reason = f"HTTP {err.status_code}"
            if err.status_code in RETRY_STATUSES:
                raise _Retryable(reason) from None
            raise _Fatal(f"{reason}: {str(err.message)[:200]}") from None
        if not response.choices:
            raise AnswerFormatError("the server returned no choice")
        choice = response.choices[0]
        if choice.finish_reason == "length":
            raise _Truncated(f"truncated: the reply reached max_tokens={max_tokens} (finish_reason=length)")
        return parse_answers(choice.message.content or "", questions)

    def _answer(self, report: str, questions: Sequence[Question]) -> list[Answer]:
        """Answers for one request, retrying; never raises for a bad reply or a broken server."""
        reason = "no attempt"
        max_tokens = self.max_tokens
        for attempt in range(self.retries + 1):
            try:
                return self._request(report, questions, max_tokens)
            except _Retryable as err:
                reason = str(err)
                if attempt < self.retries:
                    time.sleep(min(30.0, self.backoff_s * 2**attempt))
            except _Truncated as err:
                reason = str(err)
                max_tokens *= 2  # the same request would be cut at the same place
            except (AnswerFormatError, _Fatal) as err:
                return failed_answers(questions, str(err))
        attempts = self.retries + 1
        return failed_answers(questions, f"{reason} (after {attempts} attempt{'s' * (attempts > 1)})")

    def extract(self, reports: Sequence[str], questions: Sequence[Question]) -> list[list[Answer]]:
        """One list of answers per report, in the order of ``questions``."""
        from tqdm.auto import tqdm

        # A task is (report index, questions asked in one request).
        groups = [list(questions)] if self.mode == "per_report" else [[q] for q in questions]
        tasks = [(i, group) for i in range(len(reports)) for group in groups]
        got: dict[tuple[int, str], Answer] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._answer, reports[i], group): i for i, group in tasks}
            for future in tqdm(
                as_completed(futures), total=len(futures), desc="requests", unit="req", disable=not self.progress
            ):
                for answer in future.result():
                    got[(futures[future], answer.question_id)] = answer
        return [[got[(i, q.id)] for q in questions] for i in range(len(reports))]

    def close(self) -> None:
        self._client.close()
