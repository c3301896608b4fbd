# Training: survival baselines (CoxPH, DeepSurv, DeepHit on clinical / text / image / both).
# Paths come from ctsurv.survival.paths (the same functions give the evaluation inputs).

from ctsurv.survival.paths import feature_inputs as baseline_feature_inputs


# One model on one modality: fit on train (early stopping on val), risk scores and survival
# curves for every patient, then its test metrics (Harrell with 95% CI, Uno, time-dependent
# AUC, integrated Brier) and the Kaplan-Meier figure (split at the training median risk).
# One job, not two: a separate evaluation job cost more to start than to run.  Features:
# the cohort's clinical columns, or the pooled text / image feature stores.
rule train_baseline:
    input:
        unpack(lambda wildcards: baseline_feature_inputs(wildcards.dataset, wildcards.modality)),
        cohort="results/{dataset}/cohort.parquet",
    output:
        predictions="results/{dataset}/baselines/{model}_{modality}/predictions.parquet",
        survival="results/{dataset}/baselines/{model}_{modality}/survival.parquet",
        model="results/{dataset}/baselines/{model}_{modality}/model.json",
        metrics="results/{dataset}/baselines/{model}_{modality}/metrics.json",
        km=report("results/{dataset}/baselines/{model}_{modality}/km.png", caption="../workflow/report/km_baseline.rst",
                  category="Baselines", subcategory="{dataset}",
                  labels={"dataset": "{dataset}", "model": "{model}", "modality": "{modality}"}),
    params:
        clinical=lambda wildcards: list(dataset_spec(wildcards).get("clinical", {})),
        survival=rule_params.baseline(config["survival"]),
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
