"""The smaller gaps of issue 23 (item 6), each tested for its class of input."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from vlm_fixtures import cached_decoder, tiny_records, tiny_store

from ctsurv.cli import main
from ctsurv.errors import ConfigError, CtsurvError, DataError


def _err(capsys, argv):
    code = main([str(a) for a in argv])
    assert code == 1
    return capsys.readouterr().err


# -- empty questions and empty reference answers ---------------------------------------------

def test_an_empty_question_is_not_answered(tmp_path, capsys):
    err = _err(capsys, ["ask", tmp_path / "model", "--features", tmp_path, "--study", "s1", "--question", "  "])
    assert "--question is empty" in err


def _record(human="<image>\nWhere is the tumour?", answer="Right upper lobe."):
    return {"id": "r1", "study_id": "s1", "image": "s1",
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]}


@pytest.mark.parametrize("human, answer, says", [
    ("<image>\nWhere is the tumour?", " ", "turn 2, the reference answer, is empty"),
    ("A 60-year-old man.\n<image>\n", "Right upper lobe.", "turn 1 asks no question"),
])
def test_empty_questions_and_answers_are_not_trained_on(human, answer, says):
    """Stage 1 (conversation_turns) and stage 2 (question_table) read records the same way."""
    from ctsurv.vlm.data import conversation_turns
    from ctsurv.vlm.stage2_data import question_table

    record = _record(human, answer)
    with pytest.raises(DataError, match=says):
        conversation_turns(record, "train.json, record 'r1'")
    with pytest.raises(DataError, match=says):
        question_table([record], where="train.json: ")


def test_build_instructions_leaves_empty_answers_out():
    from ctsurv.review.apply import usable_answers

    final = pd.DataFrame({"study_id": ["a", "b", "c", "d"], "answer": ["Mass.", "  ", None, "Not mentioned."],
                          "status": ["ok", "ok", "ok", "not_mentioned"], "decision": [None] * 4})
    assert usable_answers(final)["study_id"].tolist() == ["a", "d"]


# -- the same --data pair twice ------------------------------------------------------------------

def test_the_same_data_pair_twice_is_refused(tmp_path, capsys):
    store = tiny_store(tmp_path / "features", ["s1", "s2"])
    inst = tmp_path / "instructions"
    inst.mkdir()
    (inst / "train.json").write_text(json.dumps(tiny_records(["s1", "s2"])), encoding="utf-8")
    err = _err(capsys, ["train-stage1", "--decoder", cached_decoder(), "--out", tmp_path / "m",
                        "--data", inst, store, "--data", tmp_path / "." / "instructions", store])
    assert "this instruction folder is given twice" in err and not (tmp_path / "m").exists()


# -- report tables whose texts are all empty --------------------------------------------------------

@pytest.fixture
def empty_reports(tmp_path):
    path = tmp_path / "reports.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "text": ["", "   ", None]}).to_csv(path, index=False)
    return path


def test_mine_words_and_extract_answers_refuse_reports_that_are_all_empty(empty_reports, tmp_path, capsys):
    err = _err(capsys, ["mine-words", empty_reports, "--text-column", "text", "--out", tmp_path / "mined"])
    assert f"{empty_reports}, column 'text': all 3 report texts are empty" in err
    err = _err(capsys, ["extract-answers", empty_reports, "--id-column", "id", "--text-column", "text",
                        "--backend", "rules", "--out", tmp_path / "answers.parquet"])
    assert f"{empty_reports}, column 'text': all 3 report texts are empty" in err
    assert not (tmp_path / "mined").exists() and not (tmp_path / "answers.parquet").exists()


def test_the_library_steps_warn_on_reports_that_are_all_empty(empty_reports, tmp_path, caplog):
    from ctsurv.extraction.backends import make_backend
    from ctsurv.extraction.extract import extract_answers, read_report_table
    from ctsurv.extraction.questions import load_questions
    from ctsurv.mining import write_mining_outputs
    from ctsurv.resources import questions_file

    with caplog.at_level(logging.WARNING):
        extract_answers(read_report_table(empty_reports), "id", "text", make_backend({"backend": "rules"}),
                        load_questions(questions_file()), cache_dir=None, source=str(empty_reports))
        write_mining_outputs(["", None], tmp_path / "w.parquet", tmp_path / "t.csv", tmp_path / "p.png")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("all 3 report texts are empty" in m for m in warned)
    assert any("all 2 report texts are empty" in m for m in warned)


# -- fold indices ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.5, "3", True, 2.0])
def test_a_fold_index_must_be_a_whole_number(tmp_path, bad):
    from ctsurv.survival.cv import read_folds

    path = tmp_path / "folds.json"
    path.write_text(json.dumps({"folds": [{"train_idx": [0, 1, bad], "test_idx": [4, 5]}]}), encoding="utf-8")
    with pytest.raises(DataError, match=r"folds.json, fold 1, train_idx: .* is not a row index"):
        read_folds(path, 10)


# -- a file as the GPU lock folder ------------------------------------------------------------------

def test_a_file_as_lock_dir_is_refused_with_or_without_gpus(tmp_path, capsys, monkeypatch):
    from ctsurv.gpu import gpu_slots

    lock = tmp_path / "locks"
    lock.write_text("", encoding="utf-8")
    err = _err(capsys, ["gpu-run", "--gpus", "0", "--lock-dir", lock, "--", "true"])
    assert f"--lock-dir {lock}: is a file, not a folder" in err
    for gpus in (0, 1):
        monkeypatch.setenv("CTSURV_FAKE_GPUS", str(gpus))
        with pytest.raises(CtsurvError, match=f"GPU lock folder {lock} is a file"):
            with gpu_slots(1, lock_dir=lock, allow_cpu=True):
                pass


# -- a folder where a file is expected ------------------------------------------------------------

def _readers():
    from ctsurv.config import load_yaml
    from ctsurv.data.cohort import read_cohort
    from ctsurv.data.tables import load_table
    from ctsurv.extraction.extract import read_report_table
    from ctsurv.imaging.pretrain import read_phenotypes
    from ctsurv.mining import read_report_texts
    from ctsurv.survival.evaluation import read_predictions
    from ctsurv.vlm.data import load_records

    return {"load_table": lambda p: load_table(p, what="table"), "load_yaml": load_yaml, "read_cohort": read_cohort,
            "read_report_table": read_report_table, "read_report_texts": lambda p: read_report_texts(p, "text"),
            "read_phenotypes": lambda p: read_phenotypes(p, ["s1"]), "load_records": load_records,
            "read_predictions": read_predictions}


@pytest.mark.parametrize("reader", list(_readers()))
def test_a_folder_where_a_file_is_expected_is_named_a_folder(tmp_path, reader):
    folder = tmp_path / "table.csv"
    folder.mkdir()
    with pytest.raises(CtsurvError) as err:
        _readers()[reader](folder)
    assert "is a folder" in str(err.value) and "not found" not in str(err.value)


def test_a_category_column_without_categories_is_a_config_error():
    from ctsurv.data.values import parse_category

    with pytest.raises(ConfigError, match="declared as a category without its categories") as err:
        parse_category(pd.DataFrame({"smoking": ["never"]}), "smoking", [])
    assert "[]" not in str(err.value)
