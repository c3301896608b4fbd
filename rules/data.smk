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
        spec=dataset_spec,
        splits=config["splits"],
    log:
        "results/logs/ingest/{dataset}.log",
    benchmark:
        "results/benchmarks/ingest/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/ingest.py"
