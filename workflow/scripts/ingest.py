"""Rule ingest: a dataset's raw data -> validated cohort table with patient-level splits."""

from ctsurv.data.cohort import build_cohort, write_cohort
from ctsurv.scripting import run_step


def main(smk):
    name = smk.wildcards.dataset
    spec = smk.params.spec
    cohort = build_cohort(name, spec, {"splits": smk.params.splits})
    write_cohort(cohort, smk.output.cohort, spec)


run_step(snakemake, main)  # noqa: F821
