"""``ctsurv review status`` and ``ctsurv review update``."""

from __future__ import annotations

import yaml

from ctsurv.cli import main
from ctsurv.review.workbook import export_workbook
from test_review_workbook import QUESTIONS, edit, make_answers, make_reports, review_values

REPO_CONFIG = "config/config.yaml"


def setup_workdir(tmp_path, repo):
    config = yaml.safe_load((repo / REPO_CONFIG).read_text(encoding="utf-8"))
    config["datasets"] = {"demo_lung": config["datasets"]["demo_lung"], "demo_pe": config["datasets"]["demo_pe"]}
    config["extraction"]["questions"] = str(repo / "config" / "questions.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "results/demo_lung/qa").mkdir(parents=True)
    make_answers().to_parquet(tmp_path / "results/demo_lung/qa/answers.parquet")
    make_reports().to_parquet(tmp_path / "results/demo_lung/cohort.parquet")
    export_workbook(make_answers(), make_reports(), QUESTIONS, tmp_path / "reviews/demo_lung.xlsx")
    edit(tmp_path / "reviews/demo_lung.xlsx", {"I2": "approve", "H3": "effusion", "I4": "reject"})


def test_status_counts(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    monkeypatch.chdir(tmp_path)
    assert main(["review", "status", "--config", "config.yaml"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["primary_tumor"] == ["1", "0", "1", "1", "3"]
    assert lines["pleura"] == ["0", "1", "0", "2", "3"]
    assert lines["all"] == ["1", "1", "1", "3", "6"]
    assert "demo_pe: no answers yet" in out


def test_status_reports_invalid_workbook(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    edit(tmp_path / "reviews/demo_lung.xlsx", {"I5": "yes"})
    monkeypatch.chdir(tmp_path)
    assert main(["review", "status", "--config", "config.yaml", "--dataset", "demo_lung"]) == 1
    assert "row 5, column I 'decision': invalid decision 'yes'" in capsys.readouterr().err


def test_update_keeps_decisions_and_backs_up(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    make_answers(n=4).to_parquet(tmp_path / "results/demo_lung/qa/answers.parquet")
    make_reports(4).to_parquet(tmp_path / "results/demo_lung/cohort.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["review", "update", "demo_lung", "--config", "config.yaml"]) == 0
    assert "8 rows, 3 decisions kept, 0 changed answers to review again, 2 new rows" in capsys.readouterr().out
    assert len(list((tmp_path / "reviews/backup").glob("demo_lung.*.xlsx"))) == 1
    values = review_values(tmp_path / "reviews/demo_lung.xlsx")
    assert values[("s0", "pleura")]["corrected_answer"] == "effusion" and values[("s3", "pleura")]["decision"] is None


def test_status_lists_reviewer_conflicts(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["review"] = {"workbook": "reviews/{dataset}.{reviewer}.xlsx", "reviewers": ["ana", "ben"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for name, decision in (("ana", "approve"), ("ben", "reject")):
        export_workbook(make_answers(), make_reports(), QUESTIONS, tmp_path / f"reviews/demo_lung.{name}.xlsx")
        edit(tmp_path / f"reviews/demo_lung.{name}.xlsx", {"I6": decision, "I7": "approve"})
    monkeypatch.chdir(tmp_path)
    assert main(["review", "status", "--config", "config.yaml", "--dataset", "demo_lung"]) == 0
    out = capsys.readouterr().out
    assert "1 answer(s) with disagreeing reviewers" in out and "s2 / primary_tumor" in out
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("all")] == [["1", "0", "0", "5", "6"]]


# -- issue 23 item 5: the review workbook's remaining gaps ------------------------------------

import os  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


COMMANDS = {
    "status": ["review", "status", "--config", "config.yaml", "--dataset", "demo_lung"],
    "update": ["review", "update", "demo_lung", "--config", "config.yaml"],
}


def _apply(tmp_path):
    """What rule apply_review runs."""
    from ctsurv.review.clinician import clinician_workbooks
    from ctsurv.review.steps import run_apply

    run_apply(tmp_path / "results/demo_lung/qa/answers.parquet",
              clinician_workbooks({"workbook": "reviews/{dataset}.xlsx", "reviewers": []}, "demo_lung"),
              tmp_path / "final.parquet", tmp_path / "audit.parquet")


@pytest.mark.parametrize("suffix", [".csv", ".xls"])
@pytest.mark.parametrize("command", ["status", "update", "apply"])
def test_decisions_saved_in_another_format_beside_the_workbook_are_reported(tmp_path, repo, monkeypatch, capsys, suffix, command):
    from ctsurv.errors import DataError

    setup_workdir(tmp_path, repo)
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / f"reviews/demo_lung{suffix}"
    saved.write_text("study_id,question_id,decision\ns0,pleura,approve\n", encoding="utf-8")
    later = time.time() + 5
    os.utime(saved, (later, later))
    if command == "apply":
        with pytest.raises(DataError) as err:
            _apply(tmp_path)
        message = str(err.value)
    else:
        code, _, message = _run(COMMANDS[command], capsys)
        assert code == 1
    assert f"saved as demo_lung{suffix} beside it" in message and "reads only demo_lung.xlsx" in message
    assert not (tmp_path / "reviews/backup").exists()
    earlier = time.time() - 3600  # an older copy is only a warning
    os.utime(saved, (earlier, earlier))
    if command == "apply":
        _apply(tmp_path)
    else:
        assert _run(COMMANDS[command], capsys)[0] == 0


def test_update_keeps_a_column_the_clinician_added(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    edit(tmp_path / "reviews/demo_lung.xlsx", {"L1": "notes", "L2": "ask Dr. B", "L4": "size?"})
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(COMMANDS["update"], capsys)
    assert code == 0 and "kept the column(s) you added: notes" in out
    import openpyxl

    sheet = openpyxl.load_workbook(tmp_path / "reviews/demo_lung.xlsx")["review"]
    rows = {(r[0], r[1]): r[11] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert sheet["L1"].value == "notes"
    assert rows[(sheet["A2"].value, sheet["B2"].value)] == "ask Dr. B" and rows[(sheet["A4"].value, sheet["B4"].value)] == "size?"
    assert sum(v is not None for v in rows.values()) == 2
    assert main(COMMANDS["status"]) == 0  # the kept column does not upset the checks


@pytest.mark.parametrize("command", ["status", "update"])
def test_a_workbook_path_that_is_a_folder_is_a_clear_error(tmp_path, repo, monkeypatch, capsys, command):
    setup_workdir(tmp_path, repo)
    (tmp_path / "reviews/demo_lung.xlsx").unlink()
    (tmp_path / "reviews/demo_lung.xlsx").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(COMMANDS[command], capsys)
    assert code == 1 and "review workbook reviews/demo_lung.xlsx: is a folder, not a workbook file" in err
    assert not (tmp_path / "reviews/backup").exists()


def test_a_failed_update_names_the_workbook_and_leaves_no_backup(tmp_path, repo, monkeypatch, capsys):
    setup_workdir(tmp_path, repo)
    edit(tmp_path / "reviews/demo_lung.xlsx", {"I5": "yes"})
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(COMMANDS["update"], capsys)
    assert code == 1 and "reviews/demo_lung.xlsx" in err and "invalid decision 'yes'" in err
    assert "backup" not in err and not (tmp_path / "reviews/backup").exists()
