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
