"""Rule signal_ladder: where between the known hazard and our model a cohort's signal is lost (CSV, Markdown, figure)."""

from pathlib import Path

import pandas as pd

from ctsurv.report.ladder import ladder_figure, signal_ladder
from ctsurv.scripting import run_step


def main(smk):
    table, markdown = signal_ladder(
        pd.read_parquet(smk.input.cohort),
        Path(smk.input.features).parent,
        smk.input.baseline_predictions,
        smk.input.stage2_predictions,
        dataset=smk.wildcards.dataset,
        clinical=smk.params.clinical,
        truth_path=smk.input.get("truth"),
        n_boot=smk.params.bootstrap["n"],
        seed=smk.params.bootstrap["seed"],
    )
    table.to_csv(smk.output.csv, index=False)
    Path(smk.output.md).write_text(markdown, encoding="utf-8")
    ladder_figure(table, smk.output.png, f"{smk.wildcards.dataset}: signal ladder (test split)")


run_step(snakemake, main)  # noqa: F821
