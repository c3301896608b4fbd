"""Control characters in report text at ingest: harmless ones normalised (one log line),
the others a clear error naming file, row and study; the report text never in messages or logs."""

from __future__ import annotations

import csv
import logging

import pandas as pd
import pytest
from test_data_hardening import build, dataset

from ctsurv.errors import DataError

SECRET = "Patient John Doe"  # stands for PHI: must not reach an error message or a log


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x07", "\x01", "\x7f", "\x85"])
def test_a_control_character_in_a_report_is_an_error_naming_file_row_and_study(tmp_path, char, caplog):
    reports = ["Lungs clear.", f"{SECRET}: effusion{char} small.", "No nodes.", None]
    path = dataset(tmp_path, report=reports)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DataError) as err:
        build(path)
    msg = str(err.value)
    assert "1 report(s) with control characters (report text not shown)" in msg
    assert f"manifest.csv, row 3, study 's1', column 'report': 1 control character(s) (U+{ord(char):04X} at character 27)" in msg
    assert "Fix: remove these characters" in msg and "UTF-8" in msg
    assert SECRET not in msg and "effusion" not in msg
    assert SECRET not in caplog.text


def test_many_bad_characters_are_counted_and_the_first_three_named(tmp_path):
    path = dataset(tmp_path, report=["a\x00b\x01c\x02d\x03", "fine", "x\x1by", "ok"])
    with pytest.raises(DataError) as err:
        build(path)
    msg = str(err.value)
    assert msg.startswith("2 report(s) with control characters")
    assert "row 2, study 's0', column 'report': 4 control character(s) (U+0000 at character 2, U+0001 at character 4, U+0002 at character 6, ...)" in msg
    assert "row 4, study 's2', column 'report': 1 control character(s) (U+001B at character 2)" in msg


def test_line_ends_and_tabs_are_normalised_with_one_log_line(tmp_path, caplog):
    reports = [f"{SECRET}.\r\nLungs clear.", "Old Mac\rline end", "Size:\t12 mm\x0bnext\x0cpage", "Plain.\nText."]
    caplog.set_level(logging.INFO, logger="ctsurv.data.cohort")
    path = dataset(tmp_path)
    table = pd.read_csv(path, dtype=str).assign(report=reports)
    table.to_csv(path, index=False, quoting=csv.QUOTE_ALL)  # a lone \r stays inside its quoted field
    cohort = build(path).set_index("study_id")
    assert cohort.loc["s0", "report"] == f"{SECRET}.\nLungs clear."
    assert cohort.loc["s1", "report"] == "Old Mac\nline end"
    assert cohort.loc["s2", "report"] == "Size: 12 mm\nnext\npage"
    assert cohort.loc["s3", "report"] == "Plain.\nText."  # untouched
    lines = [r.getMessage() for r in caplog.records if "normalised" in r.getMessage()]
    assert len(lines) == 1 and "manifest.csv: normalised 3 report(s)" in lines[0]
    assert SECRET not in caplog.text


def test_clean_reports_are_not_logged_or_changed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ctsurv.data.cohort")
    reports = ["Lungs clear.", "Ünïcode – fine ✓", None, "x"]
    cohort = build(dataset(tmp_path, report=reports))
    assert cohort["report"].tolist()[:2] == reports[:2] and pd.isna(cohort["report"].iat[2])
    assert "normalised" not in caplog.text
