"""Drafting question templates from the top words (LLM replaced by a stub)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from ctsurv.errors import CtsurvError
from ctsurv.mining.draft import draft_prompt, parse_draft, write_draft_questions


def test_prompt_lists_words_in_one_user_turn():
    prompt = draft_prompt(["effusion", "nodule"], n_questions=4)
    assert "effusion, nodule" in prompt and "Draft 4 short" in prompt and '{"questions"' in prompt


def test_parse_draft_cleans_ids_and_rejects_garbage():
    reply = 'Sure! {"questions": [{"id": "Pleural Effusion", "text": " Is there effusion? "}, {"text": "Bones?"}, {"id": "x"}]}'
    assert parse_draft(reply) == [{"id": "pleural_effusion", "text": "Is there effusion?"}, {"id": "q2", "text": "Bones?"}]
    with pytest.raises(CtsurvError, match="no JSON object"):
        parse_draft("I cannot help with that.")
    with pytest.raises(CtsurvError, match="no questions"):
        parse_draft('{"questions": []}')


def test_write_draft_questions(tmp_path):
    top = tmp_path / "top_words.csv"
    pd.DataFrame({"rank": [1, 2], "word": ["effusion", "nodule"]}).to_csv(top, index=False)
    prompts = []

    def stub(prompt):
        prompts.append(prompt)
        return '{"questions": [{"id": "pleura", "text": "Is there a pleural effusion?"}]}'

    out = tmp_path / "draft_questions.yaml"
    write_draft_questions(top, out, stub, model="stub")
    assert "effusion, nodule" in prompts[0]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# DRAFT") and "stub" in text
    assert yaml.safe_load(text)["questions"] == [{"id": "pleura", "text": "Is there a pleural effusion?"}]
    with pytest.raises(CtsurvError, match="never replaces"):
        write_draft_questions(top, tmp_path / "config" / "questions.yaml", stub)
