# Evaluation: the results tables (each baseline's metrics and Kaplan-Meier figure are written by
# rule train_baseline, rules/training.smk).

from ctsurv.survival.paths import baseline_files, truth_input


# All baselines of a dataset in one table, with paired bootstrap p-values against the
# clinical CoxPH and, for demo data, the oracle c-index of the known hazard.
rule baseline_table:
    input:
        unpack(lambda wildcards: truth_input(wildcards.dataset, DEMO_DATASETS, config["demo"]["outdir"])),
        predictions=lambda wildcards: baseline_files(wildcards.dataset, config["survival"], "predictions.parquet"),
        metrics=lambda wildcards: baseline_files(wildcards.dataset, config["survival"], "metrics.json"),
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


# One markdown page with every survival dataset's table; prints the clinical CoxPH c-index
# next to the oracle's.
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
STAGE_TARGETS.append(lambda: [f for ds in SURVIVAL_DATASETS for f in baseline_files(ds, config["survival"], "km.png")])
