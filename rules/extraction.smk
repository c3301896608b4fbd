# Answer extraction: the six questions answered from each report (rules, transformers, OpenAI-compatible / vLLM).
# `extraction.shards: N` splits the reports into N jobs (by a hash of the study id, so a study
# keeps its shard when reports are added); merge_answers joins them.  Answers are cached in
# extraction.cache_dir, so a re-run answers only new reports.  Backend vllm without a url
# starts its own `vllm serve` per job on a GPU slot (resources: gpu=1).

from ctsurv.extraction.backends import needs_gpu

EXTRACTION_SHARDS = config["extraction"]["shards"]


STAGE_TARGETS.append(lambda: expand("results/{dataset}/qa/answers.parquet", dataset=DATASETS))


rule extract_answers:
    input:
        cohort="results/{dataset}/cohort.parquet",
        questions=config["extraction"]["questions"],
    output:
        answers=f"results/{{dataset}}/qa/shards/{{shard}}-of-{EXTRACTION_SHARDS}.parquet",
    wildcard_constraints:
        shard=r"\d+",
    params:
        extraction=config["extraction"],
        n_shards=EXTRACTION_SHARDS,
        lock_dir=config["gpu"]["lock_dir"],
    threads: 2
    resources:
        **step_resources(needs_gpu(config["extraction"])),
    log:
        main="results/logs/extract_answers/{dataset}.{shard}.log",
        server="results/logs/extract_answers/{dataset}.{shard}.vllm.log",
    benchmark:
        "results/benchmarks/extract_answers/{dataset}.{shard}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/extract_answers.py"


rule merge_answers:
    input:
        shards=lambda wildcards: expand(
            "results/{dataset}/qa/shards/{shard}-of-{n}.parquet",
            dataset=wildcards.dataset,
            shard=range(EXTRACTION_SHARDS),
            n=EXTRACTION_SHARDS,
        ),
    output:
        answers="results/{dataset}/qa/answers.parquet",
    log:
        "results/logs/merge_answers/{dataset}.log",
    benchmark:
        "results/benchmarks/merge_answers/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/merge_answers.py"
