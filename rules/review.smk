# Clinician review round-trip and LLaVA-style instruction data.
#
# export_review writes a fresh workbook under results/ and creates the clinician's copy
# (config review.workbook, outside results/) only when it does not exist yet.  apply_review
# reads the clinician's copy but does not list it as an input: Snakemake would re-run on
# every save.  Instead a content digest of the workbook is a param, so apply_review (and
# what depends on it) re-runs exactly when the review's content changed.

from ctsurv.review.clinician import clinician_path
from ctsurv.review.digest import cached_review_digest


def review_workbook(wildcards):
    return str(clinician_path(config["review"]["workbook"], wildcards.dataset))


def review_digest_param(wildcards):
    return cached_review_digest(review_workbook(wildcards), f"results/{wildcards.dataset}/review/digest.json")


rule export_review:
    input:
        answers="results/{dataset}/qa/answers.parquet",
        cohort="results/{dataset}/cohort.parquet",
        questions=config["extraction"]["questions"],
    output:
        workbook="results/{dataset}/review/export.xlsx",
    params:
        clinician=review_workbook,
    log:
        "results/logs/export_review/{dataset}.log",
    benchmark:
        "results/benchmarks/export_review/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/export_review.py"


rule apply_review:
    input:
        answers="results/{dataset}/qa/answers.parquet",
    output:
        final="results/{dataset}/qa/final.parquet",
        audit="results/{dataset}/qa/audit.parquet",
    params:
        workbook=review_workbook,
        digest=review_digest_param,
    log:
        "results/logs/apply_review/{dataset}.log",
    benchmark:
        "results/benchmarks/apply_review/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/apply_review.py"


rule build_instructions:
    input:
        final="results/{dataset}/qa/final.parquet",
        cohort="results/{dataset}/cohort.parquet",
        questions=config["extraction"]["questions"],
    output:
        train="results/{dataset}/instructions/train.json",
        val="results/{dataset}/instructions/val.json",
        test="results/{dataset}/instructions/test.json",
    params:
        spec=dataset_spec,
        mode=config["review"]["conversations"],
    log:
        "results/logs/build_instructions/{dataset}.log",
    benchmark:
        "results/benchmarks/build_instructions/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/build_instructions.py"


STAGE_TARGETS.append(
    lambda: expand(
        [
            "results/{dataset}/review/export.xlsx",
            "results/{dataset}/qa/final.parquet",
            "results/{dataset}/instructions/train.json",
        ],
        dataset=DATASETS,
    )
)
