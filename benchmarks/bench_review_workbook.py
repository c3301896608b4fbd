"""Speed and peak memory of the review workbook round trip (export, digest, validation, apply).

Rows: ``--studies`` x 6 questions (default 50,000 studies: CT-RATE's about 300,000 rows),
handed out in ``--parts`` workbooks (config ``review.parts``; default 8, about 37,500 rows
each).  Each phase runs in a forked child, so its peak resident memory is its own:

* export: ``export_workbooks`` of every part (one part built and saved at a time);
* digest: ``review_digest`` of every part (what apply_review's param computes);
* validate: ``load_review`` of every part against the answers;
* apply: ``current_review`` (validate every part, merge, final and audit tables), as rule
  apply_review does.

Reference measured in the same run: ``pandas.read_excel`` of one part's review sheet
(openpyxl engine), i.e. the cost of merely parsing its cells.  Targets (issue 22): export,
validation and apply each under 2 minutes and 4 GB at 300,000 rows.

    flock /tmp/ctsurv-heavy.lock .venv/bin/python benchmarks/bench_review_workbook.py [--studies 50000] [--parts 8]
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from ctsurv.extraction.base import Question
from ctsurv.review.digest import review_digest
from ctsurv.review.steps import current_review
from ctsurv.review.validate import load_review
from ctsurv.review.workbook import export_workbooks, part_paths

QUESTIONS = [Question(f"q{i}", f"Question {i}?") for i in range(6)]


def in_child(fn):
    """Run ``fn`` in a forked child: (seconds, peak RSS in GB of the child, fn's result)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        start = time.perf_counter()
        result = fn()
        payload = pickle.dumps((time.perf_counter() - start, result))
        with os.fdopen(write, "wb") as fh:
            fh.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, status, usage = os.wait4(pid, 0)
    if status != 0 or not data:
        raise SystemExit(f"phase failed in the child (status {status})")
    seconds, result = pickle.loads(data)
    return seconds, usage.ru_maxrss / 1e6, result  # ru_maxrss: KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50000)
    parser.add_argument("--parts", type=int, default=8)
    args = parser.parse_args()
    studies = [f"study_{i:06d}" for i in range(args.studies)]
    answers = pd.DataFrame([{"study_id": s, "question_id": q.id, "answer": "A 23 mm spiculated mass in the right upper lobe.",
                             "status": "ok", "error": None, "extractor": "rules", "prompt_hash": "h"}
                            for s in studies for q in QUESTIONS])
    reports = pd.DataFrame({"study_id": studies, "report": ["Findings: " + "lungs are clear. " * 40] * len(studies)})
    rows = len(answers)
    print(f"{rows} rows ({args.studies} studies x {len(QUESTIONS)} questions) in {args.parts} workbooks; "
          f"parent process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB before the phases")
    with tempfile.TemporaryDirectory() as tmp:
        outs = part_paths(Path(tmp) / "review.xlsx", args.parts)
        answers_file = Path(tmp) / "answers.parquet"
        answers.to_parquet(answers_file)
        phases = {}
        phases["export"] = in_child(lambda: export_workbooks(answers, reports, QUESTIONS, outs).rows)
        sizes = [p.stat().st_size for p in outs]
        largest = max(outs, key=lambda p: p.stat().st_size)
        phases["reference"] = in_child(lambda: len(pd.read_excel(largest, sheet_name="review", dtype=str, engine="openpyxl")))
        phases["digest"] = in_child(lambda: [review_digest(p) for p in outs])
        phases["validate"] = in_child(lambda: sum(len(load_review(p, answers)) for p in outs))
        base = Path(tmp) / "review.xlsx"
        phases["apply"] = in_child(lambda: len(current_review(answers_file, {None: base}, args.parts)[0]))
    assert phases["export"][2] == rows and phases["validate"][2] == rows and phases["apply"][2] == rows
    print(f"workbooks: {sum(sizes) / 1e6:.1f} MB in all, {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB each")
    ref = phases["reference"][0]
    print(f"reference pandas.read_excel of the largest part ({phases['reference'][2]} rows): {ref:.2f} s")
    for name in ("export", "digest", "validate", "apply"):
        seconds, peak, _ = phases[name]
        print(f"{name:9s} {seconds:7.1f} s  {1e6 * seconds / rows:6.0f} us/row  peak {peak:5.2f} GB  "
              f"{seconds / (ref * args.parts):5.2f} x reference (all parts)")


if __name__ == "__main__":
    main()
