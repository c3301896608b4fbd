"""Score extracted answers: against the demo gold answers, and against CT-RATE's labels.

Demo gold: per question, presence/absence accuracy, size agreement and location agreement
(see :mod:`ctsurv.extraction.quality`), printed as a table.  Either score a given answers table
(any backend: ``--answers results/demo_lung/qa/answers.parquet --gold .../gold_answers.parquet``)
or let the script generate a small demo cohort and run the ``rules`` backend on it.

Real reports: on ``../shared/data/ct-rate-reports/train.csv`` (when present) how often the
``pleura`` and ``lymph_nodes`` answers agree with the ``Pleural effusion`` and
``Lymphadenopathy`` labels (rules backend, or ``--ct-rate-answers`` with study_id = AccessionNo).

    .venv/bin/python benchmarks/score_extraction.py [--answers A --gold G] [--ct-rate-answers A]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from ctsurv.extraction.base import Question
from ctsurv.extraction.quality import label_agreement, score_answers
from ctsurv.extraction.questions import load_questions
from ctsurv.extraction.rules import RulesBackend

REPO = Path(__file__).resolve().parents[1]


def rules_answers(ids, reports, questions: list[Question]) -> pd.DataFrame:
    """An answers table (study_id, question_id, answer, status) from the rules backend."""
    backend = RulesBackend()
    rows = [
        (sid, a.question_id, a.answer, a.status)
        for sid, answers in zip(ids, backend.extract(list(reports), questions))
        for a in answers
    ]
    return pd.DataFrame(rows, columns=["study_id", "question_id", "answer", "status"])


def demo_tables(n: int) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(dataset, rules answers, gold) for a freshly generated small demo cohort."""
    from ctsurv.cli import build_parser, main as cli

    if "demo-cohort" not in build_parser()._subparsers._group_actions[0].choices:
        print("(the demo generator, `ctsurv demo-cohort`, is not available: demo gold scores skipped)")
        return []
    out = Path(tempfile.mkdtemp(prefix="score_extraction_"))
    rc = cli(["demo-cohort", "--out", str(out), "--n-pretrain", str(n), "--n-lung", str(n), "--n-pe", str(n)])
    if rc:
        sys.exit(f"ctsurv demo-cohort failed (exit {rc})")
    questions = load_questions(REPO / "config" / "questions.yaml")
    tables = []
    for folder in sorted(p for p in out.iterdir() if (p / "gold_answers.parquet").exists()):
        manifest = pd.read_csv(folder / "manifest.csv", dtype={"study_id": str})
        gold = pd.read_parquet(folder / "gold_answers.parquet")
        gold["study_id"] = gold["study_id"].astype(str)
        tables.append((folder.name, rules_answers(manifest["study_id"], manifest["report"], questions), gold))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=Path, help="answers table to score (default: rules on a generated demo)")
    parser.add_argument("--gold", type=Path, help="gold_answers.parquet matching --answers")
    parser.add_argument("--n", type=int, default=60, help="studies per generated demo dataset")
    parser.add_argument("--ct-rate-answers", type=Path, help="answers on the CT-RATE sample (default: rules)")
    args = parser.parse_args()
    pd.set_option("display.width", 160)

    if args.answers is not None:
        if args.gold is None:
            parser.error("--answers needs --gold")
        tables = [(args.answers.name, pd.read_parquet(args.answers), pd.read_parquet(args.gold))]
    else:
        tables = demo_tables(args.n)
    for name, answers, gold in tables:
        print(f"\n== {name}: {gold['study_id'].nunique()} studies, answers vs gold ==")
        print(score_answers(answers, gold).to_string(index=False, float_format="{:.3f}".format))

    reports_csv = Path(os.environ.get("CTSURV_SHARED_DATA", REPO.parent / "shared" / "data")) / "ct-rate-reports" / "train.csv"
    if not reports_csv.exists():
        print(f"\n(no real reports at {reports_csv}: label agreement skipped)")
        return
    labels = pd.read_csv(reports_csv)
    if args.ct_rate_answers is not None:
        answers = pd.read_parquet(args.ct_rate_answers)
    else:
        questions = [q for q in load_questions(REPO / "config" / "questions.yaml") if q.id in ("pleura", "lymph_nodes")]
        answers = rules_answers(labels["AccessionNo"], labels["report_text"], questions)
    print(f"\n== CT-RATE sample: {len(labels)} real reports, answer presence vs manual labels ==")
    print(label_agreement(answers, labels, id_column="AccessionNo").to_string(index=False, float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
