"""Rule demo_cohort: write one synthetic demo dataset (volumes, reports, tables, gold, truth)."""

from pathlib import Path

from ctsurv.demo import generate_dataset
from ctsurv.scripting import run_step


def main(smk):
    folder = Path(smk.output.manifest).parent
    generate_dataset(
        smk.wildcards.dataset,
        folder.parent,
        seed=smk.params.seed,
        n=smk.params.n,
        workers=smk.threads,
        progress=False,
    )


run_step(snakemake, main)  # noqa: F821
