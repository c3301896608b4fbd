"""Score extracted answers: against the demo gold answers, and against CT-RATE's labels.

Demo gold: per question, presence/absence accuracy, size agreement and location agreement
(see :mod:`ctsurv.extraction.quality`), printed as a table.  Either score a given answers table
(any backend: ``--answers results/demo_lung/qa/answers.parquet --gold .../gold_answers.parquet``)
or run the ``rules`` backend on an existing demo cohort (``--demo-dir``) or on a small one the
script generates (``ctsurv.demo.generate_demo``).

Real reports: on ``../shared/data/ct-rate-reports/train.csv`` (when present) how often the
``pleura`` and ``lymph_nodes`` answers agree with the ``Pleural effusion`` and
``Lymphadenopathy`` labels (rules backend, or ``--ct-rate-answers`` with study_id = AccessionNo).

    .venv/bin/python benchmarks/score_extraction.py [--answers A --gold G | --demo-dir D | --n N --seed S]
                                                    [--ct-rate-answers A]
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


def demo_tables(n: int, demo_dir: Path | None = None, seed: int = 7) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(dataset, rules answers, gold) for every dataset of a demo cohort.

    ``demo_dir``: an existing demo cohort (folders holding ``manifest.csv`` and
    ``gold_answers.parquet``); None generates one of ``n`` studies per dataset.
    """
    if demo_dir is None:
        try:
            from ctsurv.demo import generate_demo
        except ImportError:
            print("(the demo generator, ctsurv.demo.generate_demo, is not available: demo gold scores skipped)")
            return []
        demo_dir = Path(tempfile.mkdtemp(prefix="score_extraction_"))
        generate_demo(demo_dir, seed=seed, n_pretrain=n, n_lung=n, n_pe=n, workers=1, write_labels=False, progress=False)
    questions = load_questions(REPO / "config" / "questions.yaml")
    tables = []
    for folder in sorted(p for p in demo_dir.iterdir() if (p / "gold_answers.parquet").exists()):
        manifest = pd.read_csv(folder / "manifest.csv", dtype={"study_id": str})
        gold = pd.read_parquet(folder / "gold_answers.parquet")
        gold["study_id"] = gold["study_id"].astype(str)
        tables.append((folder.name, rules_answers(manifest["study_id"], manifest["report"], questions), gold))
    if not tables:
        sys.exit(f"no demo dataset (manifest.csv + gold_answers.parquet) under {demo_dir}")
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=Path, help="answers table to score (default: rules on a generated demo)")
    parser.add_argument("--gold", type=Path, help="gold_answers.parquet matching --answers")
    parser.add_argument("--n", type=int, default=60, help="studies per generated demo dataset")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated demo")
    parser.add_argument("--demo-dir", type=Path, help="score the rules backend on this existing demo cohort instead")
    parser.add_argument("--ct-rate-answers", type=Path, help="answers on the CT-RATE sample (default: rules)")
    args = parser.parse_args()
    pd.set_option("display.width", 160)

    if args.answers is not None:
        if args.gold is None:
            parser.error("--answers needs --gold")
        tables = [(args.answers.name, pd.read_parquet(args.answers), pd.read_parquet(args.gold))]
    else:
        tables = demo_tables(args.n, args.demo_dir, args.seed)
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
