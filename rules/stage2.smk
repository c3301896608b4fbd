# Stage 2: joint survival fine-tuning of the vision-language model per survival dataset, head
# (deepsurv, deephit) and pre-training (with: W and decoder from stage 1; without: the untouched
# decoder and a fresh W, which then trains), then six-question predictions and their evaluation.
# Logic: ctsurv.vlm.stage2, ctsurv.vlm.ensemble, ctsurv.report.evaluation.  Needs rules/vlm.smk.

from ctsurv.report.paths import stage2_inputs
from ctsurv.vlm.locate import imaging_params
from ctsurv.vlm.paths import DEMO_DECODER, STAGE1_MODEL, decoder_folder
from ctsurv.vlm.survival_model import reference_params

STAGE2_RUN = "results/{dataset}/stage2/{head}_{pretrain}"


# Decoder (LoRA as in stage 1) + residual adaptor + head with L = L_LM + alpha L_surv +
# L_dispersion + L_alignment; batches of distinct patients, one question each, plus a memory
# of recent risks for the Cox risk sets.  Every patient is asked every question of the questions
# file (a failed extraction only removes that question's LM target).  Resumes after a kill from
# model.train/checkpoints.
rule train_stage2:
    input:
        unpack(lambda wildcards: stage2_inputs(wildcards.dataset, wildcards.pretrain, config["vlm"]["decoder"], STAGE1_MODEL, DEMO_DECODER)),
        questions=config["extraction"]["questions"],
    output:
        model=directory(f"{STAGE2_RUN}/model"),
    params:
        stage2=rule_params.stage2_train(config["vlm"]["stage2"]),
        vlm=rule_params.stage2_vlm(config["vlm"]),
        decoder=decoder_folder(config["vlm"]),
        # recorded in the model folder: the encoder (ctsurv predict --image) and the training
        # patients' risks scored as predict_stage2 scores them (percentile, Breslow)
        imaging=imaging_params({**config["imaging"], "encoder": encoder_settings()}),
        reference=reference_params(config["vlm"]["stage2"]["predict"]),
        lock_dir=config["gpu"]["lock_dir"],
    wildcard_constraints:
        head="deepsurv|deephit",
        pretrain="with|without",
    threads: 1
    resources:
        **step_resources(1),
    log:
        "results/logs/train_stage2/{dataset}/{head}_{pretrain}.log",
    benchmark:
        "results/benchmarks/train_stage2/{dataset}/{head}_{pretrain}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/train_stage2.py"


# Every patient with each of the six questions of the questions file (whether or not their report
# answered it; patients without any answer too, from their clinical sentence): six risks
# (DeepHit: six curves) averaged into
# the patient's prediction; generated answers for the test questions (train and val are scored
# on their reference answers).
rule predict_stage2:
    input:
        model=f"{STAGE2_RUN}/model",
        train="results/{dataset}/instructions/train.json",
        val="results/{dataset}/instructions/val.json",
        test="results/{dataset}/instructions/test.json",
        cohort="results/{dataset}/cohort.parquet",
        features="results/{dataset}/features/image/index.parquet",
        questions=config["extraction"]["questions"],
    output:
        questions=f"{STAGE2_RUN}/questions.parquet",
        predictions=f"{STAGE2_RUN}/predictions.parquet",
        survival=f"{STAGE2_RUN}/survival.parquet",
    params:
        predict=config["vlm"]["stage2"]["predict"],
        spec=dataset_spec,
        weights=config["vlm"]["weights"],
        lock_dir=config["gpu"]["lock_dir"],
    wildcard_constraints:
        head="deepsurv|deephit",
        pretrain="with|without",
    threads: 1
    resources:
        **step_resources(1),
    log:
        "results/logs/predict_stage2/{dataset}/{head}_{pretrain}.log",
    benchmark:
        "results/benchmarks/predict_stage2/{dataset}/{head}_{pretrain}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/predict_stage2.py"


# Test metrics as for the baselines (Harrell with CI, Uno, td-AUC, IBS), validation c-index,
# BERTScore F1 of generated vs reference answers, and the Kaplan-Meier figure.
rule evaluate_stage2:
    input:
        predictions=f"{STAGE2_RUN}/predictions.parquet",
        survival=f"{STAGE2_RUN}/survival.parquet",
        questions=f"{STAGE2_RUN}/questions.parquet",
    output:
        metrics=f"{STAGE2_RUN}/metrics.json",
        km=report(f"{STAGE2_RUN}/km.png", caption="../workflow/report/km_stage2.rst", category="Joint model",
                  subcategory="{dataset}", labels={"dataset": "{dataset}", "head": "{head}", "pre-training": "{pretrain}"}),
    params:
        survival=rule_params.evaluation(config["survival"]),
        bertscore=config["vlm"]["stage2"]["bertscore"],
        evaluate=rule_params.bertscore(config["vlm"]["evaluate"]),
    wildcard_constraints:
        head="deepsurv|deephit",
        pretrain="with|without",
    threads: 1
    log:
        "results/logs/evaluate_stage2/{dataset}/{head}_{pretrain}.log",
    benchmark:
        "results/benchmarks/evaluate_stage2/{dataset}/{head}_{pretrain}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/evaluate_stage2.py"
