# Clinician review round-trip and LLaVA-style instruction data.
#
# export_review writes a fresh workbook under results/ and creates the clinician's copy
# (config review.workbook, outside results/) only when it does not exist yet.  apply_review
# reads the clinician's copy but does not list it as an input: Snakemake would re-run on
# every save.  Instead a content digest of the workbook is a param, so apply_review (and
# what depends on it) re-runs exactly when the review's content changed.

from ctsurv.review.digest import cached_review_digest

# The clinician's workbook of a dataset (config review.workbook, outside results/).
REVIEW_WORKBOOK = config["review"]["workbook"]


rule export_review:
    input:
        answers="results/{dataset}/qa/answers.parquet",
        cohort="results/{dataset}/cohort.parquet",
        questions=config["extraction"]["questions"],
    output:
        workbook="results/{dataset}/review/export.xlsx",
    params:
        clinician=lambda wc: REVIEW_WORKBOOK.format(dataset=wc.dataset),
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
        workbook=lambda wc: REVIEW_WORKBOOK.format(dataset=wc.dataset),
        digest=lambda wc: cached_review_digest(
            REVIEW_WORKBOOK.format(dataset=wc.dataset), f"results/{wc.dataset}/review/digest.json"
        ),
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
