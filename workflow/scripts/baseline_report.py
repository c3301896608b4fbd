"""Rule baseline_report: every survival dataset's table on one page; prints CoxPH vs oracle."""

from pathlib import Path

import pandas as pd

from ctsurv.scripting import run_step
from ctsurv.report.tables import oracle_line, report_markdown


def main(smk):
    tables = [pd.read_csv(p) for p in smk.input.csvs]
    Path(smk.output.md).parent.mkdir(parents=True, exist_ok=True)
    Path(smk.output.md).write_text(report_markdown([Path(p).read_text(encoding="utf-8") for p in smk.input.tables], tables))
    for table in tables:
        print(oracle_line(table), flush=True)


run_step(snakemake, main)  # noqa: F821
