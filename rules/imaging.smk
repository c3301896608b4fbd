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


# ----- image and clinical-text features (encode_images, encode_clinical_text) -----


# Every study that passed QC goes through the image encoder (Merlin's I3ResNet; with no
# checkpoint, the seeded random demo variant) into the feature store beside index.parquet:
# pooled (N, C) and tokens (N, T, C), float16.  A killed job resumes from
# results/{dataset}/features/.image.partial/.
rule encode_images:
    input:
        qc="results/{dataset}/ct/qc.parquet",
    output:
        index="results/{dataset}/features/image/index.parquet",
    params:
        encoder=config["imaging"]["encoder"],
        lock_dir=config["gpu"]["lock_dir"],
    threads: 4
    resources:
        **step_resources(1, cpus_per_task=16),
    log:
        "results/logs/encode_images/{dataset}.log",
    benchmark:
        "results/benchmarks/encode_images/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/encode_images.py"


# The clinical sentence of every study (the dataset's template) through the text encoder,
# mean pooled: results/{dataset}/features/text/ with pooled (N, D), for the text-only
# baselines.  Short sentences: the CPU is enough.
rule encode_clinical_text:
    input:
        cohort="results/{dataset}/cohort.parquet",
    output:
        index="results/{dataset}/features/text/index.parquet",
    params:
        spec=dataset_spec,
        text_encoder=config["text_encoder"],
    threads: 2
    log:
        "results/logs/encode_clinical_text/{dataset}.log",
    benchmark:
        "results/benchmarks/encode_clinical_text/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/encode_clinical_text.py"


STAGE_TARGETS.append(lambda: expand("results/{dataset}/features/image/index.parquet", dataset=DATASETS))
STAGE_TARGETS.append(lambda: expand("results/{dataset}/features/text/index.parquet", dataset=SURVIVAL_DATASETS))
