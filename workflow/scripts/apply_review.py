"""Rule apply_review: validate the clinician workbooks (if any), write final and audit tables."""

from ctsurv.scripting import run_step


def main(smk):
    from ctsurv.review.clinician import clinician_workbooks
    from ctsurv.review.steps import run_apply

    workbooks = clinician_workbooks(smk.params.review, smk.wildcards.dataset)
    run_apply(smk.input.answers, workbooks, smk.output.final, smk.output.audit, parts=smk.params.review["parts"])


run_step(snakemake, main)  # noqa: F821
