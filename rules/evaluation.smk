# Evaluation: metrics, Kaplan-Meier figures, the results table.


def baseline_predictions(wildcards):
    return [f"{d}/predictions.parquet" for d in baseline_dirs(wildcards.dataset)]


def baseline_metrics(wildcards):
    return [f"{d}/metrics.json" for d in baseline_dirs(wildcards.dataset)]


def demo_truth(wildcards):
    """The known hazard of a demo dataset (for the oracle c-index); nothing for real data."""
    if wildcards.dataset in DEMO_DATASETS:
        return {"truth": f"{config['demo']['outdir']}/{wildcards.dataset}/truth.parquet"}
    return {}


# Test metrics (Harrell with 95% CI, Uno, time-dependent AUC, integrated Brier) and the
# Kaplan-Meier figure (split at the training median risk) of one baseline.
rule evaluate_baseline:
    input:
        predictions="results/{dataset}/baselines/{model}_{modality}/predictions.parquet",
        survival="results/{dataset}/baselines/{model}_{modality}/survival.parquet",
    output:
        metrics="results/{dataset}/baselines/{model}_{modality}/metrics.json",
        km="results/{dataset}/baselines/{model}_{modality}/km.png",
    params:
        survival=config["survival"],
    wildcard_constraints:
        model="coxph|deepsurv|deephit",
        modality="clinical|text|image|both",
    log:
        "results/logs/evaluate_baseline/{dataset}/{model}_{modality}.log",
    benchmark:
        "results/benchmarks/evaluate_baseline/{dataset}/{model}_{modality}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/evaluate_baseline.py"


# All baselines of a dataset in one table, with paired bootstrap p-values against the
# clinical CoxPH and, for demo data, the oracle c-index of the known hazard.
rule baseline_table:
    input:
        unpack(demo_truth),
        predictions=baseline_predictions,
        metrics=baseline_metrics,
    output:
        csv="results/{dataset}/baselines/results.csv",
        md="results/{dataset}/baselines/results.md",
    params:
        bootstrap=config["survival"]["bootstrap"],
    log:
        "results/logs/baseline_table/{dataset}.log",
    benchmark:
        "results/benchmarks/baseline_table/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/baseline_table.py"


# One markdown page with every survival dataset's table.
rule baseline_report:
    input:
        tables=expand("results/{dataset}/baselines/results.md", dataset=SURVIVAL_DATASETS),
        csvs=expand("results/{dataset}/baselines/results.csv", dataset=SURVIVAL_DATASETS),
    output:
        md="results/report/baselines.md",
    log:
        "results/logs/baseline_report/report.log",
    benchmark:
        "results/benchmarks/baseline_report/report.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/baseline_report.py"


STAGE_TARGETS.append(lambda: ["results/report/baselines.md"] if SURVIVAL_DATASETS else [])
STAGE_TARGETS.append(lambda: [f"{d}/km.png" for ds in SURVIVAL_DATASETS for d in baseline_dirs(ds)])
