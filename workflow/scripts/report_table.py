"""Rule results_table: the paper's Table 2 for one survival dataset (CSV + Markdown)."""

import logging
from pathlib import Path

from ctsurv.report.paper import dataset_table
from ctsurv.report.tables import closing_note
from ctsurv.scripting import run_step


def main(smk):
    table, markdown = dataset_table(
        smk.input.baseline_predictions,
        smk.input.baseline_metrics,
        smk.input.stage2_predictions,
        smk.input.stage2_metrics,
        dataset=smk.wildcards.dataset,
        truth_path=smk.input.get("truth"),
        n_boot=smk.params.bootstrap["n"],
        seed=smk.params.bootstrap["seed"],
    )
    table.to_csv(smk.output.csv, index=False)
    Path(smk.output.md).write_text(markdown, encoding="utf-8")
    for line in closing_note(table):
        logging.getLogger("ctsurv").info("%s", line)


run_step(snakemake, main)  # noqa: F821
