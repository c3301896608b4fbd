"""The rules backend against the demo generator's gold answers (the >= 90 % requirement)."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.extraction.quality import score_answers
from ctsurv.extraction.questions import load_questions
from ctsurv.extraction.rules import RulesBackend


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    try:
        from ctsurv.demo import generate_demo
    except ImportError:
        pytest.skip("the demo generator (ctsurv.demo.generate_demo) is not available")
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, n_pretrain=20, n_lung=30, n_pe=30)
    return out


@pytest.mark.parametrize("dataset", ["demo_pretrain", "demo_lung", "demo_pe"])
def test_rules_presence_agrees_with_demo_gold(demo_dir, repo, dataset):
    manifest = pd.read_csv(demo_dir / dataset / "manifest.csv", dtype={"study_id": str})
    gold = pd.read_parquet(demo_dir / dataset / "gold_answers.parquet")
    gold["study_id"] = gold["study_id"].astype(str)
    questions = load_questions(repo / "config" / "questions.yaml")
    answers = RulesBackend().extract(list(manifest["report"]), questions)
    table = pd.DataFrame(
        [(sid, a.question_id, a.answer, a.status) for sid, row in zip(manifest["study_id"], answers) for a in row],
        columns=["study_id", "question_id", "answer", "status"],
    )
    scores = score_answers(table, gold).set_index("question_id")
    assert scores.loc["all", "missing"] == 0
    assert scores.loc["all", "presence"] >= 0.90, scores.to_string()
