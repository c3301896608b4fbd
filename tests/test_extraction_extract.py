"""extract_answers: the answers-table contract, caching, resuming after a kill, shards and their merge."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.errors import CtsurvError, DataError
from ctsurv.extraction.base import NOT_MENTIONED, STATUSES, Answer, Question
from ctsurv.extraction.cache import AnswerCache, cache_key
from ctsurv.extraction.extract import (
    ANSWER_COLUMNS,
    extract_answers,
    merge_shards,
    read_answers,
    read_report_table,
    shard_of,
    write_answers,
)
from ctsurv.extraction.prompt import prompt_hash

QUESTIONS = [Question("pleura", "Pleural effusion?"), Question("bones", "Bone changes?")]


class CountingBackend:
    """Answers 'pleura' with the report's first word; fails reports containing FAIL; can die mid-run."""

    name = "counting"
    prompt_version = "v1"

    def __init__(self, die_after_batches: int | None = None):
        self.seen: list[str] = []
        self.calls = 0
        self.die_after_batches = die_after_batches

    def extract(self, reports, questions):
        if self.die_after_batches is not None and self.calls >= self.die_after_batches:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.seen += list(reports)
        out = []
        for r in reports:
            if "FAIL" in r:
                out.append([Answer(q.id, "", "failed", "invalid JSON") for q in questions])
            else:
                out.append([Answer("pleura", r.split()[0], "ok"), Answer("bones", NOT_MENTIONED, "not_mentioned")])
        return out


def reports(n, start=0):
    return pd.DataFrame({"sid": [f"S{i:03d}" for i in range(start, start + n)], "text": [f"w{i} report" for i in range(start, start + n)]})


def test_answers_table_contract_and_left_out_empty_reports():
    df = pd.DataFrame({"sid": ["a", "b", "c", "d"], "text": ["x one", None, "  ", "FAIL two"]})
    out = extract_answers(df, "sid", "text", CountingBackend(), QUESTIONS, progress=False)
    assert list(out.columns) == ANSWER_COLUMNS
    assert out["study_id"].tolist() == ["a", "a", "d", "d"]
    assert out["question_id"].tolist() == ["pleura", "bones"] * 2
    assert out["answer"].tolist() == ["x", NOT_MENTIONED, "", ""]
    assert out["status"].tolist() == ["ok", "not_mentioned", "failed", "failed"]
    assert out["error"].isna().tolist() == [True, True, False, False]
    assert set(out["status"]) <= set(STATUSES)
    assert (out["extractor"] == "counting").all()
    assert (out["prompt_hash"] == prompt_hash(QUESTIONS, "v1")).all()


def test_cache_answers_only_new_reports_and_keeps_failed_ones_out(tmp_path):
    cache = tmp_path / "cache"
    first = reports(5)
    first.loc[2, "text"] = "FAIL w2"
    b1 = CountingBackend()
    out1 = extract_answers(first, "sid", "text", b1, QUESTIONS, cache_dir=cache, batch_size=2, progress=False)
    assert len(b1.seen) == 5 and b1.calls == 3
    # new reports arrive: only they (and the failed one) are answered again
    both = pd.concat([first, reports(3, start=5)], ignore_index=True)
    b2 = CountingBackend()
    out2 = extract_answers(both, "sid", "text", b2, QUESTIONS, cache_dir=cache, batch_size=2, progress=False)
    assert sorted(b2.seen) == ["FAIL w2", "w5 report", "w6 report", "w7 report"]
    assert out2.iloc[: len(out1)].equals(out1)
    # another model or prompt version, or other questions, is another key
    b3 = CountingBackend()
    b3.prompt_version = "v2"
    extract_answers(first, "sid", "text", b3, QUESTIONS, cache_dir=cache, progress=False)
    assert len(b3.seen) == 5
    assert cache_key("r", prompt_hash(QUESTIONS, "v1"), "m") != cache_key("r", prompt_hash(QUESTIONS[:1], "v1"), "m")
    other_wording = [Question("pleura", "Effusion?"), QUESTIONS[1]]
    assert cache_key("r", prompt_hash(QUESTIONS, "v1"), "m") != cache_key("r", prompt_hash(other_wording, "v1"), "m")


def test_cache_key_follows_the_prompt_text_not_only_its_version_label(tmp_path, monkeypatch):
    from ctsurv.extraction import prompt as prompt_module

    cache = tmp_path / "cache"
    extract_answers(reports(3), "sid", "text", CountingBackend(), QUESTIONS, cache_dir=cache, progress=False)
    same = CountingBackend()
    extract_answers(reports(3), "sid", "text", same, QUESTIONS, cache_dir=cache, progress=False)
    assert same.seen == []
    # the instructions are edited but nobody bumped prompt_version ("v1" still)
    edited = prompt_module._INSTRUCTIONS.replace("Keep each answer short", "Answer in full")
    assert edited != prompt_module._INSTRUCTIONS
    monkeypatch.setattr(prompt_module, "_INSTRUCTIONS", edited)
    again = CountingBackend()
    extract_answers(reports(3), "sid", "text", again, QUESTIONS, cache_dir=cache, progress=False)
    assert len(again.seen) == 3


def test_cache_key_follows_the_model_fingerprint(tmp_path):
    """Same backend name (the model folder's base name), other weights: answered again."""
    cache = tmp_path / "cache"
    old = CountingBackend()
    old.fingerprint = "weights-1"
    extract_answers(reports(3), "sid", "text", old, QUESTIONS, cache_dir=cache, progress=False)
    new = CountingBackend()
    new.fingerprint = "weights-2"
    extract_answers(reports(3), "sid", "text", new, QUESTIONS, cache_dir=cache, progress=False)
    assert len(new.seen) == 3
    back = CountingBackend()
    back.fingerprint = "weights-1"
    extract_answers(reports(3), "sid", "text", back, QUESTIONS, cache_dir=cache, progress=False)
    assert back.seen == []


def test_a_killed_job_loses_at_most_the_batch_in_flight(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        extract_answers(reports(7), "sid", "text", CountingBackend(die_after_batches=2), QUESTIONS,
                        cache_dir=cache, batch_size=3, progress=False)
    assert len(AnswerCache(cache).files()) == 2 and not list(cache.glob(".*tmp"))
    resumed = CountingBackend()
    out = extract_answers(reports(7), "sid", "text", resumed, QUESTIONS, cache_dir=cache, batch_size=3, progress=False)
    assert resumed.seen == ["w6 report"]
    assert out["answer"].tolist()[::2] == [f"w{i}" for i in range(7)]


def test_shards_partition_the_studies_and_merge_back(tmp_path):
    df = reports(40)
    paths = []
    for i in range(3):
        part = extract_answers(df, "sid", "text", CountingBackend(), QUESTIONS, shard=(i, 3), progress=False)
        assert set(part["study_id"]) == {s for s in df["sid"] if shard_of(s, 3) == i}
        paths.append(tmp_path / f"{i}-of-3.parquet")
        write_answers(part, paths[-1])
    merged = merge_shards(paths)
    whole = extract_answers(df, "sid", "text", CountingBackend(), QUESTIONS, progress=False)
    assert merged.equals(whole.sort_values("study_id", kind="stable").reset_index(drop=True))
    assert 5 < merged["study_id"].nunique() / 3 < 20  # roughly balanced
    # the shard depends on the id alone (not on the table), fixed across runs and machines
    assert [shard_of(f"S{i:03d}", 3) for i in range(8)] == [1, 0, 2, 0, 0, 1, 0, 0]
    grown = pd.concat([reports(10, start=100), df], ignore_index=True)
    part = extract_answers(grown, "sid", "text", CountingBackend(), QUESTIONS, shard=(0, 3), progress=False)
    assert set(read_answers(paths[0])["study_id"]) <= set(part["study_id"])
    with pytest.raises(DataError, match="answered in more than one shard"):
        merge_shards([paths[0], paths[0]])


def test_table_problems_are_reported_with_rows_and_columns(tmp_path):
    df = pd.DataFrame({"sid": ["a", "b", "a"], "text": ["x", "y", "z"]})
    with pytest.raises(DataError, match=r"reports.csv, column 'sid': study 'a' appears more than once \(rows 2, 4\)"):
        extract_answers(df, "sid", "text", CountingBackend(), QUESTIONS, source="reports.csv", progress=False)
    with pytest.raises(DataError, match=r"no column 'report'; the columns are \['sid', 'text'\]"):
        extract_answers(df, "sid", "report", CountingBackend(), QUESTIONS, progress=False)
    with pytest.raises(DataError, match="row 3, column 'sid': empty study id"):
        extract_answers(pd.DataFrame({"sid": ["a", None], "text": ["x", "y"]}), "sid", "text", CountingBackend(), QUESTIONS, progress=False)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({c: ["x"] for c in ANSWER_COLUMNS}).to_parquet(bad)
    with pytest.raises(DataError, match="row 2, column 'status': 'x' is not one of"):
        read_answers(bad)


def test_every_report_failing_stops_the_job_with_the_reason():
    df = pd.DataFrame({"sid": ["a", "b"], "text": ["FAIL 1", "FAIL 2"]})
    with pytest.raises(CtsurvError, match=r"all 2 reports of shard 0/1 failed with counting; first reason \(study 'a'\): invalid JSON"):
        extract_answers(df, "sid", "text", CountingBackend(), QUESTIONS, progress=False)


def test_report_tables_keep_ids_as_written(tmp_path):
    (tmp_path / "r.csv").write_text('id,text\n007,"a, b"\n008,\n', encoding="utf-8")
    df = read_report_table(tmp_path / "r.csv")
    assert df["id"].tolist() == ["007", "008"] and df["text"].isna().tolist() == [False, True]
    with pytest.raises(DataError, match="file not found"):
        read_report_table(tmp_path / "missing.csv")
