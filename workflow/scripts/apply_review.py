"""Rule apply_review: validate the clinician workbook (if any), write final and audit tables."""

from ctsurv.scripting import run_step


def main(smk):
    from ctsurv.review.steps import run_apply

    run_apply(smk.input.answers, smk.params.workbook, smk.output.final, smk.output.audit)


run_step(snakemake, main)  # noqa: F821
