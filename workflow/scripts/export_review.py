"""Rule export_review: a fresh review workbook; creates the clinician's copy if absent."""

from ctsurv.scripting import run_step


def main(smk):
    from ctsurv.review.steps import run_export

    run_export(smk.input.answers, smk.input.cohort, smk.input.questions, smk.output.workbook, smk.params.clinician)


run_step(snakemake, main)  # noqa: F821
