"""The rules backend against the demo generator's gold answers (the >= 90 % requirement)."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.demo import generate_demo
from ctsurv.extraction.quality import score_answers
from ctsurv.extraction.questions import load_questions
from ctsurv.extraction.rules import RulesBackend

N = 40  # patients per demo dataset: small enough for CI, large enough to hold every template

# Measured on the default demo (seed 7; 150/200/200 patients) the rules backend agrees on
# presence 1.000 on every dataset and question, on sizes 1.000 and on locations 1.000; these
# floors leave a margin for a smaller sample and future wording changes of the generator.
PRESENCE_MIN, SIZE_MIN, LOCATION_MIN = 0.90, 0.90, 0.85


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, seed=7, n_pretrain=N, n_lung=N, n_pe=N, workers=1, write_labels=False, progress=False)
    return out


@pytest.mark.parametrize("dataset", ["demo_pretrain", "demo_lung", "demo_pe"])
def test_rules_presence_agrees_with_demo_gold(demo_dir, repo, dataset):
    manifest = pd.read_csv(demo_dir / dataset / "manifest.csv", dtype={"study_id": str})
    gold = pd.read_parquet(demo_dir / dataset / "gold_answers.parquet")
    gold["study_id"] = gold["study_id"].astype(str)
    questions = load_questions(repo / "config" / "questions.yaml")
    assert len(manifest) >= N and manifest["report"].notna().all()
    assert len(gold) == len(manifest) * len(questions)
    answers = RulesBackend().extract(list(manifest["report"]), questions)
    table = pd.DataFrame(
        [(sid, a.question_id, a.answer, a.status) for sid, row in zip(manifest["study_id"], answers) for a in row],
        columns=["study_id", "question_id", "answer", "status"],
    )
    scores = score_answers(table, gold).set_index("question_id")
    detail = scores.to_string()
    assert scores.loc["all", "n"] == len(gold)
    assert scores.loc["all", "missing"] == 0
    assert scores.loc["all", "presence"] >= PRESENCE_MIN, detail
    # not vacuous: the gold holds positive findings, with sizes and locations to compare
    assert gold["present"].sum() >= N // 2, detail
    assert scores.loc["all", "n_size"] >= 5 and scores.loc["all", "n_location"] >= 10, detail
    assert scores.loc["all", "size"] >= SIZE_MIN, detail
    assert scores.loc["all", "location"] >= LOCATION_MIN, detail
    for qid in (q.id for q in questions):
        assert scores.loc[qid, "presence"] >= PRESENCE_MIN - 0.05, detail
