"""Rule export_review: a fresh review workbook; creates the clinician workbooks that are absent."""

from ctsurv.scripting import run_step


def main(smk):
    from ctsurv.review.clinician import clinician_workbooks
    from ctsurv.review.steps import run_export

    workbooks = clinician_workbooks(smk.params.review, smk.wildcards.dataset)
    # writes smk.output.workbooks: params.export itself, or its parts (export.partK-of-N.xlsx)
    run_export(smk.input.answers, smk.input.cohort, smk.input.questions, smk.params.export, workbooks,
               parts=smk.params.review["parts"])


run_step(snakemake, main)  # noqa: F821
