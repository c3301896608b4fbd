"""The review workbook handed out in parts (issue 22, item 3): a study's rows in the part its
hash names, each part a workbook of its own, and the round trip through every part loses no
decision (tiny split: 7 studies in 3 parts)."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.review.digest import review_digests
from ctsurv.review.steps import run_apply, run_export
from ctsurv.review.workbook import part_paths
from ctsurv.shards import shard_of
from test_review_workbook import QUESTIONS, col, edit, make_answers, make_reports, review_values
from test_review_workflow import UPSTREAM_RULES


def test_a_split_review_round_trip_keeps_every_decision(tmp_path):
    answers, reports = make_answers(7), make_reports(7)
    (tmp_path / "qa").mkdir()
    answers.to_parquet(tmp_path / "qa" / "answers.parquet")
    reports.assign(split="train").to_parquet(tmp_path / "cohort.parquet")
    (tmp_path / "questions.yaml").write_text(
        "questions:\n" + "".join(f"  - id: {q.id}\n    text: \"{q.text}\"\n" for q in QUESTIONS), encoding="utf-8")
    review = {"workbook": str(tmp_path / "reviews" / "{dataset}.xlsx"), "reviewers": [], "parts": 3}
    workbooks = {None: tmp_path / "reviews" / "demo.xlsx"}
    out = tmp_path / "results" / "export.xlsx"
    summary = run_export(tmp_path / "qa" / "answers.parquet", tmp_path / "cohort.parquet", tmp_path / "questions.yaml", out,
                         workbooks, parts=3)
    assert summary.rows == 14 and summary.new == 14
    files = part_paths(workbooks[None], 3)
    assert [p.name for p in files] == ["demo.part1-of-3.xlsx", "demo.part2-of-3.xlsx", "demo.part3-of-3.xlsx"]
    assert all(p.exists() for p in part_paths(out, 3)) and not out.exists()
    studies = [sorted({s for s, _ in review_values(p)}) for p in files]
    assert studies == [sorted(f"s{i}" for i in range(7) if shard_of(f"s{i}", 3) == k) for k in range(3)]
    assert all(studies) and sorted(sum(studies, [])) == [f"s{i}" for i in range(7)]

    # a decision in every part: approve the first row, correct the second
    decided = {}
    for path in files:
        rows = list(review_values(path))
        edit(path, {f"{col('decision')}2": "approve", f"{col('corrected_answer')}3": "small effusion",
                    f"{col('decision')}3": "correct"})
        decided[rows[0]] = ("approve", "2 cm mass in the right upper lobe")
        decided[rows[1]] = ("correct", "small effusion")
    final = run_apply(tmp_path / "qa" / "answers.parquet", workbooks, tmp_path / "final.parquet", tmp_path / "audit.parquet",
                      parts=3).set_index(["study_id", "question_id"])
    got = {key: (final.loc[key, "decision"], final.loc[key, "answer"]) for key in decided}
    assert got == decided and (final["decision"] != "pending").sum() == 6

    # a re-export (one study more) carries every decision over, wherever its study is
    more = make_answers(8)
    more.to_parquet(tmp_path / "qa" / "answers.parquet")
    make_reports(8).to_parquet(tmp_path / "cohort.parquet")
    again = run_export(tmp_path / "qa" / "answers.parquet", tmp_path / "cohort.parquet", tmp_path / "questions.yaml", out,
                       workbooks, parts=3)
    assert (again.rows, again.carried, again.new, again.dropped) == (16, 6, 2, 0)
    exported = {}
    for path in part_paths(out, 3):
        exported.update(review_values(path))
    assert {key: exported[key]["decision"] for key in decided} == {key: d for key, (d, _) in decided.items()}
    assert review_digests(review, "demo", tmp_path / "cache").count("part") == 3


def test_part_paths_keep_one_file_when_not_split(tmp_path):
    assert part_paths(tmp_path / "r.xlsx", 1) == [tmp_path / "r.xlsx"]
    assert part_paths("r.xlsx", 2)[1].name == "r.part2-of-2.xlsx"


SNAKEFILE = """
configfile: "config.yaml"

include: "{repo}/rules/common.smk"
include: "{repo}/rules/review.smk"

"""


@pytest.mark.slow
def test_the_review_rules_export_and_apply_every_part(tmp_path, repo):
    import subprocess
    import sys

    import yaml

    config = yaml.safe_load((repo / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["datasets"] = {"demo_lung": config["datasets"]["demo_lung"]}
    config["extraction"]["questions"] = str(repo / "config" / "questions.yaml")
    config["review"] = {"workbook": "reviews/{dataset}.xlsx", "parts": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(repo=repo) + UPSTREAM_RULES, encoding="utf-8")
    (tmp_path / "raw").mkdir()
    make_reports(7).assign(patient_id=[f"p{i}" for i in range(7)], split="train").to_parquet(tmp_path / "raw" / "cohort.parquet")
    make_answers(7).to_parquet(tmp_path / "raw" / "answers.parquet")
    targets = ["results/demo_lung/qa/final.parquet", "results/demo_lung/review/export.part2-of-2.xlsx"]

    def run():
        res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(tmp_path), "-s",
                              str(tmp_path / "Snakefile"), *targets], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        return res.stdout + res.stderr

    run()
    exports = [tmp_path / "results/demo_lung/review" / f"export.part{k}-of-2.xlsx" for k in (1, 2)]
    clinician = [tmp_path / "reviews" / f"demo_lung.part{k}-of-2.xlsx" for k in (1, 2)]
    assert all(p.exists() for p in exports + clinician) and not (tmp_path / "reviews" / "demo_lung.xlsx").exists()
    first = next(iter(review_values(clinician[1])))
    edit(clinician[1], {f"{col('decision')}2": "reject"})
    assert "apply_review" in run()  # the digest of part 2 changed
    final = pd.read_parquet(tmp_path / "results/demo_lung/qa/final.parquet").set_index(["study_id", "question_id"])
    assert final.loc[first, "decision"] == "reject" and (final["decision"] == "pending").sum() == 13
