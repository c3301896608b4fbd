# Training: survival baselines (CoxPH, DeepSurv, DeepHit on clinical / text / image / both).


def baseline_runs():
    """(model, modality) pairs of the baselines: CoxPH on the clinical table, every head on
    every configured modality."""
    runs = [("coxph", "clinical")] if "clinical" in config["survival"]["modalities"] else []
    runs += [(h, m) for h in config["survival"]["heads"] for m in config["survival"]["modalities"]]
    return runs


def baseline_feature_inputs(wildcards):
    """The feature stores a modality reads (by their index files)."""
    stores = {"text": ["text"], "image": ["image"], "both": ["text", "image"]}.get(wildcards.modality, [])
    return {kind: f"results/{wildcards.dataset}/features/{kind}/index.parquet" for kind in stores}


def baseline_dirs(dataset):
    return [f"results/{dataset}/baselines/{model}_{modality}" for model, modality in baseline_runs()]


# One model on one modality: fit on train (early stopping on val), risk scores and survival
# curves for every patient (evaluation uses the test split).
rule train_baseline:
    input:
        unpack(baseline_feature_inputs),
        cohort="results/{dataset}/cohort.parquet",
    output:
        predictions="results/{dataset}/baselines/{model}_{modality}/predictions.parquet",
        survival="results/{dataset}/baselines/{model}_{modality}/survival.parquet",
        model="results/{dataset}/baselines/{model}_{modality}/model.json",
    params:
        clinical=lambda wildcards: list(dataset_spec(wildcards).get("clinical", {})),
        survival=config["survival"],
    wildcard_constraints:
        model="coxph|deepsurv|deephit",
        modality="clinical|text|image|both",
    threads: 1
    log:
        "results/logs/train_baseline/{dataset}/{model}_{modality}.log",
    benchmark:
        "results/benchmarks/train_baseline/{dataset}/{model}_{modality}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/train_baseline.py"
