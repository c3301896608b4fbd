# Data: the demo cohort generator and dataset ingest (cohort tables).


# ---- ingest: raw data -> results/{dataset}/cohort.parquet (adapters in ctsurv.data.adapters)
from ctsurv.data.adapters import input_files as ingest_input_files


# The split depends only on `splits` and the dataset's own entry (params), so editing any
# other key never re-runs ingest or moves a patient.
rule ingest:
    input:
        # the tables the adapter reads (images are checked, not tracked)
        tables=lambda wildcards: ingest_input_files(dataset_spec(wildcards)),
    output:
        cohort="results/{dataset}/cohort.parquet",
    params:
        spec=lambda wildcards: rule_params.ingest(dataset_spec(wildcards)),
        splits=config["splits"],
    log:
        "results/logs/ingest/{dataset}.log",
    benchmark:
        "results/benchmarks/ingest/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/ingest.py"


# ---- demo_cohort: the synthetic demo datasets (one job per demo dataset) ----


STAGE_TARGETS.append(lambda: [demo_manifest(d) for d in DEMO_DATASETS])


rule demo_cohort:
    output:
        manifest=f"{config['demo']['outdir']}/{{dataset}}/manifest.csv",
        gold=f"{config['demo']['outdir']}/{{dataset}}/gold_answers.parquet",
        truth=f"{config['demo']['outdir']}/{{dataset}}/truth.parquet",
        phenotypes=f"{config['demo']['outdir']}/{{dataset}}/phenotypes.csv",
        readme=f"{config['demo']['outdir']}/{{dataset}}/README.md",
        images=directory(f"{config['demo']['outdir']}/{{dataset}}/images"),
    params:
        seed=config["demo"]["seed"],
        n=demo_size,
    threads: 2
    wildcard_constraints:
        dataset="|".join(d for d in DEMO_DATASETS if d in ("demo_pretrain", "demo_lung", "demo_pe")) or "NONE",
    log:
        "results/logs/demo_cohort/{dataset}.log",
    benchmark:
        "results/benchmarks/demo_cohort/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/demo_cohort.py"
