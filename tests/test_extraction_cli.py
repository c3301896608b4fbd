"""``ctsurv extract-answers`` on any report table, with the rules backend and against a loopback server."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.cli import main
from ctsurv.extraction.extract import ANSWER_COLUMNS, shard_of

from replay_server import fetch_json, running

QUESTIONS_YAML = """version: 1
questions:
  - id: pleura
    text: Is there pleural involvement or pleural effusion?
  - id: bones
    text: Are there skeletal or bone changes?
"""


def write_inputs(tmp_path):
    (tmp_path / "q.yaml").write_text(QUESTIONS_YAML, encoding="utf-8")
    pd.DataFrame(
        {"acc": ["A1", "A2", "A3"], "findings": ["Small left pleural effusion. No bone lesions.", "Normal chest.", None]}
    ).to_parquet(tmp_path / "reports.parquet")


def test_rules_backend_on_a_parquet_table(tmp_path, capsys):
    write_inputs(tmp_path)
    out = tmp_path / "answers.parquet"
    rc = main(["extract-answers", str(tmp_path / "reports.parquet"), "--id-column", "acc", "--text-column", "findings",
               "--questions", str(tmp_path / "q.yaml"), "--out", str(out)])
    assert rc == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ANSWER_COLUMNS
    assert df["study_id"].tolist() == ["A1", "A1", "A2", "A2"]
    assert df["answer"].tolist()[:2] == ["Small left pleural effusion.", "No bone lesions."]
    assert df["status"].tolist() == ["ok", "ok", "not_mentioned", "not_mentioned"]
    assert "2 studies, 4 answers (2 ok, 2 not_mentioned, 0 failed)" in capsys.readouterr().out


def test_openai_backend_answers_once_then_from_the_cache(tmp_path, capsys):
    write_inputs(tmp_path)
    args = ["extract-answers", str(tmp_path / "reports.parquet"), "--id-column", "acc", "--text-column", "findings",
            "--questions", str(tmp_path / "q.yaml"), "--backend", "openai", "--cache-dir", str(tmp_path / "cache")]
    with running({"default": {"answers": {"pleura": "Effusion.", "bones": "Not mentioned"}}}, tmp_path) as url:
        assert main(args + ["--url", url + "/v1", "--out", str(tmp_path / "a.parquet")]) == 0
        assert main(args + ["--url", url, "--out", str(tmp_path / "b.parquet")]) == 0  # all from the cache
        n_requests = len(fetch_json(url + "/_requests")["requests"])
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert n_requests == 2 and a.equals(b)
    assert set(a["extractor"]) == {"openai:replay-model"}
    assert a["answer"].tolist() == ["Effusion.", "Not mentioned"] * 2


def test_user_errors_print_without_traceback(tmp_path, capsys):
    write_inputs(tmp_path)
    rc = main(["extract-answers", str(tmp_path / "reports.parquet"), "--id-column", "id", "--text-column", "findings",
               "--questions", str(tmp_path / "q.yaml"), "--out", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "reports.parquet: no column 'id'; the columns are ['acc', 'findings']" in err and "Traceback" not in err
    rc = main(["extract-answers", str(tmp_path / "reports.parquet"), "--id-column", "acc", "--text-column", "findings",
               "--backend", "openai", "--questions", str(tmp_path / "q.yaml"), "--out", str(tmp_path / "x.parquet")])
    assert rc == 1 and "extraction.url" in capsys.readouterr().err


def test_shard_option_answers_only_that_shard(tmp_path):
    write_inputs(tmp_path)
    base = ["extract-answers", str(tmp_path / "reports.parquet"), "--id-column", "acc", "--text-column", "findings",
            "--questions", str(tmp_path / "q.yaml")]
    got = set()
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2", "--out", str(tmp_path / f"{i}.parquet")]) == 0
        ids = set(pd.read_parquet(tmp_path / f"{i}.parquet")["study_id"])
        assert all(shard_of(s, 2) == i for s in ids)
        got |= ids
    assert got == {"A1", "A2"}
    with pytest.raises(SystemExit):
        main(base + ["--shard", "2/2", "--out", str(tmp_path / "x.parquet")])
