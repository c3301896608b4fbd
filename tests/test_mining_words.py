"""Report mining: tokenizer, medical-word score, outputs and the command line."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ctsurv.cli import main as cli_main
from ctsurv.mining import mine_words, tokenize, top_words
from ctsurv.mining.tokenize import token_kind
from ctsurv.mining.words import min_doc_freq_for

REPORTS = [
    "No pleural effusion. A 3.2 cm spiculated nodule in the right upper lobe.",
    "Pleural effusion-thickening was not detected. Enlarged lymph node 13x9.3 mm in the subcarinal station.",
    "The lungs were normal. Small left pleural effusion. Lymph nodes are not enlarged.",
    "Nodule of 8 mm in the left lower lobe. No lymph node enlargement. The heart was normal.",
]


def test_tokenizer_splits_hyphenated_findings_and_keeps_measurements():
    assert tokenize("Pleural effusion-thickening, 3.2 cm.") == ["pleural", "effusion", "thickening", "3.2", "cm"]
    assert tokenize("A 13x9.3 mm node at the 7th-8th rib; 3cm; T4 N1") == [
        "a", "13x9.3", "mm", "node", "at", "the", "7th", "8th", "rib", "3", "cm", "t4", "n1"]
    assert tokenize("") == []


@pytest.mark.parametrize(
    "token, kind",
    [("effusion", "word"), ("the", "stop"), ("were", "stop"), ("3.2", "number"), ("13x9.3", "number"),
     ("t4", "number"), ("mm", "unit"), ("cm", "unit"), ("a", "stop")],
)
def test_token_kinds(token, kind):
    assert token_kind(token) == kind


def test_min_doc_freq_has_a_floor_of_two():
    assert min_doc_freq_for(10, 0.01) == 2
    assert min_doc_freq_for(1000, 0.01) == 10
    assert min_doc_freq_for(1001, 0.01) == 11


def test_mine_words_counts_and_scores():
    table = mine_words(REPORTS + [None, ""], english_floor=1e-6, min_doc_fraction=0.01)
    assert list(table.columns) == ["word", "count", "doc_freq", "score", "kind"]
    row = table.set_index("word")
    assert row.loc["effusion", "count"] == 3 and row.loc["effusion", "doc_freq"] == 3
    assert row.loc["lymph", "count"] == 3
    assert row.loc["nodule", "doc_freq"] == 2
    # the formula of the docstring, by hand
    from wordfreq import word_frequency

    total = int(table["count"].sum())
    expected = math.log10((3 / total + 1e-6) / (word_frequency("effusion", "en") + 1e-6))
    assert row.loc["effusion", "score"] == pytest.approx(expected)
    # stop words, numbers, units and words in a single report are counted but not scored
    for word in ["the", "were", "3.2", "mm", "spiculated"]:
        assert math.isnan(row.loc[word, "score"]), word
    assert row.loc["were", "count"] == 1 and row.loc["the", "count"] == 5
    # a general word frequent in the reports scores below the findings
    assert row.loc["normal", "score"] < min(row.loc[w, "score"] for w in ["effusion", "nodule", "lymph"])


def test_top_words_ranks_and_excludes_unscored():
    table = mine_words(REPORTS)
    top = top_words(table, 5)
    assert list(top["rank"]) == [1, 2, 3, 4, 5]
    assert top["score"].is_monotonic_decreasing
    assert top["kind"].eq("word").all()


def test_mine_words_empty_input():
    table = mine_words([None, ""])
    assert table.empty and list(table.columns) == ["word", "count", "doc_freq", "score", "kind"]


def test_real_reports_rank_findings_not_general_words(ct_rate_reports_dir):
    texts = pd.read_csv(ct_rate_reports_dir / "train.csv")["report_text"]
    top = top_words(mine_words(texts), 100)
    words = list(top["word"])
    for word in ["effusion", "nodule", "lymph", "pleural", "mediastinal"]:
        assert word in words[:30], word
    for word in ["the", "were", "normal", "and", "mm"]:
        assert word not in words, word


def test_cli_writes_three_outputs(tmp_path):
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"id": range(4), "text": REPORTS}).to_csv(reports, index=False)
    out = tmp_path / "out"
    assert cli_main(["mine-words", str(reports), "--text-column", "text", "--out", str(out), "--top-n", "7"]) == 0
    top = pd.read_csv(out / "top_words.csv")
    assert len(top) == 7 and top.loc[0, "rank"] == 1
    assert pd.read_parquet(out / "words.parquet")["count"].sum() > 40
    assert (out / "top_words.png").stat().st_size > 1000
    parquet = tmp_path / "reports.parquet"
    pd.DataFrame({"text": REPORTS}).to_parquet(parquet)
    assert cli_main(["mine-words", str(parquet), "--text-column", "text", "--out", str(tmp_path / "p")]) == 0


def test_cli_names_missing_column(tmp_path, capsys):
    reports = tmp_path / "reports.csv"
    pd.DataFrame({"text": REPORTS}).to_csv(reports, index=False)
    assert cli_main(["mine-words", str(reports), "--text-column", "report", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "reports.csv" in err and "'report' not found" in err and "--text-column" in err
