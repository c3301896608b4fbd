# Imaging: CT preprocessing (Merlin's chain), QC, and the image / clinical-text feature caches.


# `imaging.shards: N` splits preprocess_ct and encode_images into N jobs each (by a hash of the
# study id, so a study keeps its shard when studies are added; under SLURM each shard is its own
# job); merge_qc and merge_image_features join them into the files one job would have written,
# byte for byte (ctsurv.imaging.sharded).
IMAGING_SHARDS = config["imaging"]["shards"]


# Merlin's preprocessing of one shard's studies into the per-study cache
# results/{dataset}/ct/volumes/ (read with ctsurv.imaging.cache.load_preprocessed).  The shard's
# QC rows are the job's output: the cache itself persists across runs and skips studies whose
# source and settings are unchanged, so a re-run (or a killed job's next run) only does new or
# changed images.
rule preprocess_ct:
    input:
        cohort="results/{dataset}/cohort.parquet",
    output:
        qc=f"results/{{dataset}}/ct/shards/{{shard}}-of-{IMAGING_SHARDS}.parquet",
    wildcard_constraints:
        shard=r"\d+",
    params:
        imaging=rule_params.preprocess(config["imaging"]),
        n_shards=IMAGING_SHARDS,
    threads: config["imaging"]["workers"]
    log:
        "results/logs/preprocess_ct/{dataset}.{shard}.log",
    benchmark:
        "results/benchmarks/preprocess_ct/{dataset}.{shard}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/preprocess_ct.py"


# The shards' QC rows in cohort order (the QC table every later step reads) and the montage.
rule merge_qc:
    input:
        cohort="results/{dataset}/cohort.parquet",
        shards=lambda wildcards: expand(
            "results/{dataset}/ct/shards/{shard}-of-{n}.parquet",
            dataset=wildcards.dataset,
            shard=range(IMAGING_SHARDS),
            n=IMAGING_SHARDS,
        ),
    output:
        qc="results/{dataset}/ct/qc.parquet",
        montage="results/{dataset}/ct/qc_montage.png",
    params:
        imaging=rule_params.qc(config["imaging"]),
    log:
        "results/logs/merge_qc/{dataset}.log",
    benchmark:
        "results/benchmarks/merge_qc/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/merge_qc.py"


STAGE_TARGETS.append(lambda: expand("results/{dataset}/ct/qc.parquet", dataset=DATASETS))


# ----- the demo's stand-in for Merlin's training (pretrain_encoder) -----


# With no Merlin checkpoint and imaging.encoder.pretrain true, the small I3ResNet is trained on
# the pretrain cohort's preprocessed volumes (training split; early stopping on val) with
# Merlin's two signals: phenotype codes (BCE) and a contrastive loss against the packaged
# MiniLM's report embedding.  Saved in Merlin's key layout, it is the checkpoint that
# encode_images loads (strictly, like a real one) for every dataset.
rule pretrain_encoder:
    input:
        cohort="results/{dataset}/cohort.parquet",
        qc="results/{dataset}/ct/qc.parquet",
        phenotypes=pretrain_phenotypes,
    output:
        checkpoint="results/{dataset}/encoder/encoder.safetensors",
        summary="results/{dataset}/encoder/pretrain.json",
    params:
        encoder={k: config["imaging"]["encoder"][k] for k in ("layers", "width", "seed")},
        settings=config["imaging"]["pretrain"],
        text_model=config["text_encoder"]["model"],
    threads: 2
    wildcard_constraints:
        dataset="|".join(PRETRAIN_DATASETS) or "NONE",
    log:
        "results/logs/pretrain_encoder/{dataset}.log",
    benchmark:
        "results/benchmarks/pretrain_encoder/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/pretrain_encoder.py"


# ----- image and clinical-text features (encode_images, encode_clinical_text) -----


# Every study of one shard that passed QC goes through the image encoder (Merlin's I3ResNet;
# with no checkpoint, the seeded random demo variant) into the shard's feature store; a killed
# job resumes from results/{dataset}/features/.{shard}-of-{n}.partial/ beside it.
rule encode_images:
    input:
        qc="results/{dataset}/ct/qc.parquet",
        checkpoint=encoder_checkpoint_input,
    output:
        index=f"results/{{dataset}}/features/image_shards/{{shard}}-of-{IMAGING_SHARDS}/index.parquet",
    wildcard_constraints:
        shard=r"\d+",
    params:
        encoder=encoder_settings(),
        lock_dir=config["gpu"]["lock_dir"],
        n_shards=IMAGING_SHARDS,
    threads: 4
    resources:
        **step_resources(1, cpus_per_task=16),
    log:
        "results/logs/encode_images/{dataset}.{shard}.log",
    benchmark:
        "results/benchmarks/encode_images/{dataset}.{shard}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/encode_images.py"


# The shards' stores as one feature store beside index.parquet, in the QC table's order:
# pooled (N, C) and tokens (N, T, C), float16, and encoder.json.
rule merge_image_features:
    input:
        qc="results/{dataset}/ct/qc.parquet",
        shards=lambda wildcards: expand(
            "results/{dataset}/features/image_shards/{shard}-of-{n}/index.parquet",
            dataset=wildcards.dataset,
            shard=range(IMAGING_SHARDS),
            n=IMAGING_SHARDS,
        ),
    output:
        index="results/{dataset}/features/image/index.parquet",
    log:
        "results/logs/merge_image_features/{dataset}.log",
    benchmark:
        "results/benchmarks/merge_image_features/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/merge_image_features.py"


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


# Demo survival cohorts: can the latent image fields of the generator's truth table be read
# linearly from the pooled image features?  Cross-validated ridge probes (R² / AUC with
# bootstrap intervals), the random-weights encoder beside the pretrained one.  For real data:
# `ctsurv probe STORE TABLE --columns ...`.
rule probe_features:
    input:
        index="results/{dataset}/features/image/index.parquet",
        qc="results/{dataset}/ct/qc.parquet",
        truth=f"{config['demo']['outdir']}/{{dataset}}/truth.parquet",
        checkpoint=encoder_checkpoint_input,
    output:
        md="results/{dataset}/features/image/probe.md",
        json="results/{dataset}/features/image/probe.json",
    params:
        encoder=rule_params.probe_encoder(config["imaging"]["encoder"]),
        probe=config["imaging"]["probe"],
    # One thread: a leaf job (nothing waits on it) that runs beside others; two torch threads
    # on a busy 2-core machine cost 2.7x the CPU time of one (measured).
    threads: 1
    wildcard_constraints:
        dataset="|".join(d for d in SURVIVAL_DATASETS if d in DEMO_DATASETS) or "NONE",
    log:
        "results/logs/probe_features/{dataset}.log",
    benchmark:
        "results/benchmarks/probe_features/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/probe.py"


STAGE_TARGETS.append(
    lambda: expand("results/{dataset}/features/image/probe.md", dataset=[d for d in SURVIVAL_DATASETS if d in DEMO_DATASETS])
)
