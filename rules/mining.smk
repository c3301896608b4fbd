# Report mining: word frequencies, top medical words, bar plot (the paper's Fig. 2 left),
# and an optional LLM draft of question templates for clinicians (not part of `rule all`).


STAGE_TARGETS.append(
    lambda: expand(
        "results/{dataset}/mining/{name}",
        dataset=DATASETS,
        name=["words.parquet", "top_words.csv", "top_words.png"],
    )
)


rule mine_words:
    input:
        cohort="results/{dataset}/cohort.parquet",
    output:
        words="results/{dataset}/mining/words.parquet",
        top="results/{dataset}/mining/top_words.csv",
        plot="results/{dataset}/mining/top_words.png",
    params:
        mining=rule_params.mining(config["mining"]),
    log:
        "results/logs/mine_words/{dataset}.log",
    benchmark:
        "results/benchmarks/mine_words/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/mine_words.py"


# Drafts only: config/questions.yaml stays the approved list until clinicians edit it.
rule draft_questions:
    input:
        top="results/{dataset}/mining/top_words.csv",
    output:
        draft="results/{dataset}/mining/draft_questions.yaml",
    params:
        url=config["mining"]["draft_url"] or config["extraction"]["url"],
        model=config["mining"]["draft_model"] or config["extraction"]["model"],
    log:
        "results/logs/draft_questions/{dataset}.log",
    benchmark:
        "results/benchmarks/draft_questions/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/draft_questions.py"
