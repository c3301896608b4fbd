"""Rule baseline_table: one dataset's baselines (and the oracle, for demo data) in a table."""

import logging
from pathlib import Path

from ctsurv.scripting import run_step
from ctsurv.report.tables import dataset_results, oracle_line


def main(smk):
    table, markdown = dataset_results(
        smk.input.predictions,
        smk.input.metrics,
        dataset=smk.wildcards.dataset,
        truth_path=smk.input.get("truth"),
        n_boot=smk.params.bootstrap["n"],
        seed=smk.params.bootstrap["seed"],
    )
    table.to_csv(smk.output.csv, index=False)
    Path(smk.output.md).write_text(markdown, encoding="utf-8")
    logging.getLogger("ctsurv").info("%s", oracle_line(table))


run_step(snakemake, main)  # noqa: F821
