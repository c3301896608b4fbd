"""Speed of the review workbook round trip (export, digest, validation) for N rows.

Reference measured in the same run: pandas.read_excel of the same review sheet (openpyxl
engine), i.e. the cost of merely parsing the cells.

    .venv/bin/python benchmarks/bench_review_workbook.py [--studies 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from ctsurv.extraction.base import Question
from ctsurv.review.digest import review_digest
from ctsurv.review.validate import load_review
from ctsurv.review.workbook import export_workbook

QUESTIONS = [Question(f"q{i}", f"Question {i}?") for i in range(6)]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    args = parser.parse_args()
    studies = [f"study_{i:06d}" for i in range(args.studies)]
    answers = pd.DataFrame([{"study_id": s, "question_id": q.id, "answer": "A 23 mm spiculated mass in the right upper lobe.", "status": "ok"}
                            for s in studies for q in QUESTIONS])
    reports = pd.DataFrame({"study_id": studies, "report": ["Findings: " + "lungs are clear. " * 40] * len(studies)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "review.xlsx"
        export = timed(lambda: export_workbook(answers, reports, QUESTIONS, path))
        reference = timed(lambda: pd.read_excel(path, sheet_name="review", dtype=str, engine="openpyxl"))
        digest = timed(lambda: review_digest(path))
        validate = timed(lambda: load_review(path, answers))
        size = path.stat().st_size
    rows = len(answers)
    print(f"{rows} rows ({args.studies} studies x {len(QUESTIONS)} questions), workbook {size / 1e6:.1f} MB")
    print(f"reference pandas.read_excel: {reference:.2f} s")
    for name, seconds in (("export", export), ("digest", digest), ("validate", validate)):
        print(f"{name:9s} {seconds:6.2f} s  {1000 * seconds / rows:6.2f} ms/row  {seconds / reference:5.2f} x reference")


if __name__ == "__main__":
    main()
