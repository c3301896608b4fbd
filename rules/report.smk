# The report: the paper's Table 2 per survival dataset (baselines, ours per head x pre-training,
# the oracle for demo data), Fig. 3 (KM with / without pre-training), the signal ladder and one
# results page.
# `snakemake --report results/report/report.html` then bundles every captioned output
# (bootstrap.sh demo runs it after the workflow).  Logic: ctsurv.report.

from ctsurv.report.paths import pretraining_figures, stage2_runs
from ctsurv.survival.paths import baseline_files, truth_input


rule results_table:
    input:
        unpack(lambda wildcards: truth_input(wildcards.dataset, DEMO_DATASETS, config["demo"]["outdir"])),
        baseline_predictions=lambda wildcards: baseline_files(wildcards.dataset, config["survival"], "predictions.parquet"),
        baseline_metrics=lambda wildcards: baseline_files(wildcards.dataset, config["survival"], "metrics.json"),
        stage2_predictions=lambda wildcards: stage2_runs(wildcards.dataset, config["vlm"]["stage2"], "predictions.parquet"),
        stage2_metrics=lambda wildcards: stage2_runs(wildcards.dataset, config["vlm"]["stage2"], "metrics.json"),
    output:
        csv=report("results/{dataset}/results/table2.csv", caption="../workflow/report/table2.rst", category="Results",
                   subcategory="{dataset}", labels={"dataset": "{dataset}", "table": "Table 2 (csv)"}),
        md="results/{dataset}/results/table2.md",
    params:
        bootstrap=config["survival"]["bootstrap"],
    log:
        "results/logs/results_table/{dataset}.log",
    benchmark:
        "results/benchmarks/results_table/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/report_table.py"


rule pretraining_figure:
    input:
        with_pretraining="results/{dataset}/stage2/{head}_with/predictions.parquet",
        without_pretraining="results/{dataset}/stage2/{head}_without/predictions.parquet",
    output:
        png=report("results/{dataset}/results/km_pretraining_{head}.png", caption="../workflow/report/fig3.rst",
                   category="Results", subcategory="{dataset}", labels={"dataset": "{dataset}", "figure": "Fig. 3 ({head})"}),
    params:
        min_at_risk=config["survival"]["km_min_at_risk"],
    wildcard_constraints:
        head="deepsurv|deephit",
    log:
        "results/logs/pretraining_figure/{dataset}_{head}.log",
    benchmark:
        "results/benchmarks/pretraining_figure/{dataset}_{head}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/report_figure.py"


# Every dataset's Table 2, the figures and the closing note (c-index of CoxPH, best baseline,
# ours with / without pre-training and the oracle) on one page.
rule results_report:
    input:
        tables=expand("results/{dataset}/results/table2.md", dataset=SURVIVAL_DATASETS),
        csvs=expand("results/{dataset}/results/table2.csv", dataset=SURVIVAL_DATASETS),
        figures=pretraining_figures(SURVIVAL_DATASETS, config["vlm"]["stage2"]),
    output:
        md=report("results/report/results.md", caption="../workflow/report/results.rst", category="Results",
                  labels={"page": "all datasets"}),
    log:
        "results/logs/results_report/report.log",
    benchmark:
        "results/benchmarks/results_report/report.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/report_page.py"


# The signal ladder of a survival dataset: test c-index (bootstrap interval) of the known hazard
# and each of its parts (demo data), the clinical CoxPH, a penalised Cox on the encoder's pooled
# features (dimension and penalty chosen on validation), the baselines and ours; the page names
# the step where the signal is lost.
rule signal_ladder:
    input:
        unpack(lambda wildcards: truth_input(wildcards.dataset, DEMO_DATASETS, config["demo"]["outdir"])),
        cohort="results/{dataset}/cohort.parquet",
        features="results/{dataset}/features/image/index.parquet",
        baseline_predictions=lambda wildcards: baseline_files(wildcards.dataset, config["survival"], "predictions.parquet"),
        stage2_predictions=lambda wildcards: stage2_runs(wildcards.dataset, config["vlm"]["stage2"], "predictions.parquet"),
    output:
        csv="results/{dataset}/results/ladder.csv",
        md=report("results/{dataset}/results/ladder.md", caption="../workflow/report/ladder.rst", category="Results",
                  subcategory="{dataset}", labels={"dataset": "{dataset}", "table": "signal ladder"}),
        png=report("results/{dataset}/results/ladder.png", caption="../workflow/report/ladder.rst", category="Results",
                   subcategory="{dataset}", labels={"dataset": "{dataset}", "figure": "signal ladder"}),
    params:
        bootstrap=config["survival"]["bootstrap"],
        clinical=lambda wildcards: list(dataset_spec(wildcards).get("clinical", {})),
    log:
        "results/logs/signal_ladder/{dataset}.log",
    benchmark:
        "results/benchmarks/signal_ladder/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/report_ladder.py"


STAGE_TARGETS.append(lambda: ["results/report/results.md"] if SURVIVAL_DATASETS else [])
STAGE_TARGETS.append(lambda: [f"results/{d}/results/ladder.{x}" for d in SURVIVAL_DATASETS for x in ("md", "png")])
