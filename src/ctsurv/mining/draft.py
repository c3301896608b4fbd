"""Draft question templates from the top report words, with an LLM, for clinicians to review.

The draft goes to its own YAML file; the approved list (``config/questions.yaml``) changes only
when a person copies entries into it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..errors import CtsurvError
from .draft_prompt import PROMPT


def draft_prompt(words: Sequence[str], n_questions: int = 6) -> str:
    """The instruction sent to the LLM (a single user turn: Mistral templates reject a system role)."""
    return PROMPT.format(n=n_questions, words=", ".join(words))


def parse_draft(text: str) -> list[dict[str, str]]:
    """The ``[{id, text}, ...]`` list of an LLM reply holding a JSON object ``{"questions": [...]}``.

    Raises:
        CtsurvError: the reply holds no such object.
    """
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        items = json.loads(match.group())["questions"] if match else None
    except (json.JSONDecodeError, KeyError, TypeError):
        items = None
    if not isinstance(items, list):
        raise CtsurvError("the LLM reply holds no JSON object {\"questions\": [{\"id\": ..., \"text\": ...}]}; re-run the rule")
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            qid = re.sub(r"[^a-z0-9_]+", "_", str(item.get("id", "")).lower()).strip("_") or f"q{len(out) + 1}"
            out.append({"id": qid, "text": item["text"].strip()})
    if not out:
        raise CtsurvError("the LLM reply lists no questions with a text; re-run the rule")
    return out


def openai_complete(url: str, model: str, max_tokens: int = 800) -> Callable[[str], str]:
    """A prompt -> reply function for an OpenAI-compatible server (e.g. ``vllm serve``)."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="EMPTY")

    def complete(prompt: str) -> str:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=max_tokens,  # bounded: JSON replies can fill with whitespace
        )
        return reply.choices[0].message.content or ""

    return complete


def write_draft_questions(
    top_words_csv: str | Path, out: str | Path, complete: Callable[[str], str], *, n_words: int = 100, model: str = ""
) -> list[dict[str, str]]:
    """Ask ``complete`` for templates built from the top words and write the draft YAML.

    Args:
        top_words_csv: ``top_words.csv`` of :func:`~ctsurv.mining.write_mining_outputs`.
        out: draft file to write (never ``config/questions.yaml``).
        complete: prompt -> reply function, e.g. :func:`openai_complete`.
        n_words: top words given to the LLM.
        model: recorded in the draft's header.

    Returns:
        The drafted ``{id, text}`` entries.
    """
    import pandas as pd

    out = Path(out)
    if out.name == "questions.yaml" and out.parent.name == "config":
        raise CtsurvError(f"{out}: a draft never replaces the approved questions; write it elsewhere")
    words = list(pd.read_csv(top_words_csv)["word"].head(n_words))
    questions = parse_draft(complete(draft_prompt(words)))
    header = (
        f"# DRAFT question templates drafted by an LLM ({model or 'unnamed model'}) from the top {len(words)}\n"
        "# report words.  For clinicians to review: copy approved entries into config/questions.yaml.\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump({"version": 1, "questions": questions}, sort_keys=False), encoding="utf-8")
    return questions
