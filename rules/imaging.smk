# Imaging: CT preprocessing (Merlin's chain), QC, and the image / clinical-text feature caches.


# Merlin's preprocessing of every study into the per-study cache results/{dataset}/ct/volumes/
# (read with ctsurv.imaging.cache.load_preprocessed).  The QC table is the rule's sentinel:
# the cache itself persists across runs and skips studies whose source and settings are
# unchanged, so a re-run only does new or changed images.
rule preprocess_ct:
    input:
        cohort="results/{dataset}/cohort.parquet",
    output:
        qc="results/{dataset}/ct/qc.parquet",
        montage="results/{dataset}/ct/qc_montage.png",
    params:
        imaging=config["imaging"],
    threads: config["imaging"]["workers"]
    log:
        "results/logs/preprocess_ct/{dataset}.log",
    benchmark:
        "results/benchmarks/preprocess_ct/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/preprocess_ct.py"


STAGE_TARGETS.append(lambda: expand("results/{dataset}/ct/qc.parquet", dataset=DATASETS))
