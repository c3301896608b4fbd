# Clinician review round-trip and LLaVA-style instruction data.
#
# export_review writes a fresh workbook under results/ and creates the clinician's copy
# (config review.workbook, outside results/) only when it does not exist yet.  apply_review
# reads the clinician's copy but does not list it as an input: Snakemake would re-run on
# every save.  Instead a content digest of the workbook is a param, so apply_review (and
# what depends on it) re-runs exactly when the review's content changed.

from ctsurv.review.digest import review_digests
from ctsurv.review.workbook import part_paths

# Where the clinician workbooks are (config review.workbook and review.reviewers) and in how
# many parts each is handed out (review.parts: export.partK-of-N.xlsx, one study in one part).
REVIEW_PLACES = {key: config["review"][key] for key in ("workbook", "reviewers", "parts")}
EXPORT = "results/{dataset}/review/export.xlsx"
EXPORTS = [str(p) for p in part_paths(EXPORT, config["review"]["parts"])]


rule export_review:
    input:
        answers="results/{dataset}/qa/answers.parquet",
        cohort="results/{dataset}/cohort.parquet",
        questions=config["extraction"]["questions"],
    output:
        workbooks=EXPORTS,
    params:
        review=REVIEW_PLACES,
        export=lambda wildcards: EXPORT.format(dataset=wildcards.dataset),
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
        review=REVIEW_PLACES,
        digest=lambda wc: review_digests(REVIEW_PLACES, wc.dataset, f"results/{wc.dataset}/review"),
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
            *EXPORTS,
            "results/{dataset}/qa/final.parquet",
            "results/{dataset}/instructions/train.json",
        ],
        dataset=DATASETS,
    )
)
