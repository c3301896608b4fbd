"""LLaVA-style instruction data from final answers."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from ctsurv.errors import DataError
from ctsurv.instructions import build_conversations, first_prompt, write_json
from ctsurv.review.apply import apply_review
from test_review_workbook import QUESTIONS, make_answers

SPEC = {"clinical_sentence": "A {age}-year-old {sex} patient.", "clinical": {"age": {"type": "int"}, "sex": {"type": "category"}}}


def cohort():
    return pd.DataFrame({"study_id": ["s0", "s1", "s2"], "patient_id": ["p0", "p1", "p2"], "split": ["train", "train", "test"],
                         "image": ["/img/s0.nii.gz", "/img/s1.nii.gz", "/img/s2.nii.gz"], "age": [64, 70, 51], "sex": ["male", "female", "male"]})


def final_table():
    final, _ = apply_review(make_answers(), None)
    final.loc[1, "decision"] = "reject"  # s0 pleura
    final.loc[2, ["status", "answer"]] = ["failed", ""]  # s1 tumor
    return final


def sentence(row, spec):
    return spec["clinical_sentence"].format(age=row["age"], sex=row["sex"])


def test_per_question_records():
    out = build_conversations(final_table(), cohort(), QUESTIONS, SPEC, sentence_fn=sentence)
    assert [r["id"] for r in out["train"]] == ["s0__primary_tumor", "s1__pleura"]
    assert [r["id"] for r in out["test"]] == ["s2__primary_tumor", "s2__pleura"]
    assert out["val"] == []
    record = out["train"][0]
    assert record["image"] == os.path.relpath("/img/s0.nii.gz") and record["study_id"] == "s0"
    assert record["conversations"] == [
        {"from": "human", "value": "A 64-year-old male patient.\n<image>\nWhat is the location and size of the primary lung tumor?"},
        {"from": "gpt", "value": "2 cm mass in the right upper lobe"},
    ]
    assert out["train"][1]["conversations"][1]["value"] == "Not mentioned"  # kept


def test_per_study_records_are_multi_turn():
    out = build_conversations(final_table(), cohort(), QUESTIONS, SPEC, mode="per_study", sentence_fn=sentence)
    (s2,) = out["test"]
    assert s2["id"] == "s2" and s2["question_ids"] == ["primary_tumor", "pleura"]
    values = [turn["value"] for turn in s2["conversations"]]
    assert [turn["from"] for turn in s2["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert values[0].startswith("A 51-year-old male patient.\n<image>\n") and values[2] == "Is there pleural effusion?"
    assert sum("<image>" in v for v in values) == 1
    assert [r["question_ids"] for r in out["train"]] == [["primary_tumor"], ["pleura"]]


def test_no_template_gives_plain_llava_prompt():
    assert first_prompt(None, "Q?") == "<image>\nQ?"
    out = build_conversations(final_table(), cohort(), QUESTIONS, {}, sentence_fn=None)
    assert out["test"][0]["conversations"][0]["value"] == "<image>\n" + QUESTIONS[0].text


def test_real_clinical_sentence_and_json(tmp_path):
    spec = {"clinical_sentence": "{age} year-old {sex} patient.", "clinical": {"age": {"type": "int"}, "sex": {"type": "category", "categories": ["female", "male"]}}}
    out = build_conversations(final_table(), cohort(), QUESTIONS, spec)
    assert out["train"][0]["conversations"][0]["value"].startswith("64 year-old male patient.\n<image>\n")
    write_json(out["train"], tmp_path / "train.json")
    assert json.loads((tmp_path / "train.json").read_text(encoding="utf-8")) == out["train"]


def test_missing_study_and_bad_mode():
    with pytest.raises(DataError, match="2 studies missing from the cohort table"):
        build_conversations(final_table(), cohort().iloc[:1], QUESTIONS, {})
    with pytest.raises(DataError, match="per_question, per_study"):
        build_conversations(final_table(), cohort(), QUESTIONS, {}, mode="both")


def test_image_paths_are_relative_to_the_project(tmp_path, monkeypatch):
    """Absolute paths break when results move to another machine or node (issue 12, item 11)."""
    project = tmp_path / "project"
    images = [str(project / "data" / "ct" / "s0.nii.gz"), "data/ct/s1.nii.gz", str(tmp_path / "shared" / "s2.nii.gz")]
    table = cohort().assign(image=images)
    out = build_conversations(final_table(), table, QUESTIONS, SPEC, sentence_fn=sentence, project_root=project)
    got = {r["study_id"]: r["image"] for split in out.values() for r in split}
    assert got == {"s0": "data/ct/s0.nii.gz", "s1": "data/ct/s1.nii.gz", "s2": "../shared/s2.nii.gz"}
    project.mkdir()
    monkeypatch.chdir(project)  # default root: the working directory, i.e. the Snakemake project
    out = build_conversations(final_table(), table, QUESTIONS, SPEC, sentence_fn=sentence)
    assert {r["study_id"]: r["image"] for split in out.values() for r in split} == got
    write_json(out["train"], tmp_path / "train.json")
    assert str(tmp_path) not in (tmp_path / "train.json").read_text(encoding="utf-8")
