"""Rule results_report: every dataset's Table 2, the figures and the closing note on one page."""

import os
from pathlib import Path

import pandas as pd

from ctsurv.report.paper import results_page
from ctsurv.scripting import run_step


def main(smk):
    out = Path(smk.output.md)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = [os.path.relpath(f, out.parent) for f in smk.input.figures]
    page = results_page([pd.read_csv(p) for p in smk.input.csvs],
                        [Path(p).read_text(encoding="utf-8") for p in smk.input.tables], figures)
    out.write_text(page, encoding="utf-8")
    print(page.split("## Closing note")[1].strip(), flush=True)


run_step(snakemake, main)  # noqa: F821
