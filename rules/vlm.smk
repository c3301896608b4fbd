# The CT vision-language model: the demo decoder and stage 1 (visual instruction tuning on the
# pretrain datasets' QA), with its evaluation on their test splits.  Logic: ctsurv.vlm.

from ctsurv.vlm.locate import imaging_params
from ctsurv.vlm.paths import DEMO_DECODER, STAGE1_MODEL, decoder_folder, stage1_data, stage1_inputs


# Demo only (vlm.decoder: null): the stand-in for RadLLaMA-7B.  A byte-level BPE tokenizer and a
# small LlamaForCausalLM with a short language-model warm-up, both trained on the pretrain
# cohorts' training-split reports, written with save_pretrained.
rule demo_decoder:
    input:
        cohorts=expand("results/{dataset}/cohort.parquet", dataset=PRETRAIN_DATASETS),
    output:
        folder=directory(DEMO_DECODER),
    params:
        settings=config["vlm"]["demo_decoder"],
    threads: 1
    log:
        "results/logs/demo_decoder/demo_decoder.log",
    benchmark:
        "results/benchmarks/demo_decoder/demo_decoder.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/demo_decoder.py"


# Stage 1: W and the decoder (LoRA by default) on the instruction data of every pretrain
# dataset, from the cached visual tokens (the encoder stays frozen).  Resumes after a kill from
# results/models/stage1.train/checkpoints; with vlm.stage1.gpus > 1 it runs under
# accelerate launch, one process per GPU slot.
rule train_stage1:
    input:
        unpack(lambda wildcards: stage1_inputs(PRETRAIN_DATASETS, config["vlm"])),
    output:
        model=directory(STAGE1_MODEL),
    params:
        data=stage1_data(PRETRAIN_DATASETS),
        decoder=decoder_folder(config["vlm"]),
        # the encoder + preprocessing that made the stores (the in-run pretrained one when it is
        # used: encoder_settings), recorded in the model folder
        imaging=imaging_params({**config["imaging"], "encoder": encoder_settings()}),
        vlm=rule_params.stage1(config["vlm"]),
        lock_dir=config["gpu"]["lock_dir"],
    # one CPU thread: the demo decoder's small matrices gain little from a second one, and a
    # busy 2-core machine loses a lot to threads waiting on each other (GPU runs need no more)
    threads: 1
    # GPU partition (ctsurv.gpu.step_resources): one SLURM job holds every GPU, and
    # accelerate launch starts the processes inside its one task; 48 h (it resumes if cut)
    resources:
        **step_resources(config["vlm"]["stage1"]["gpus"], runtime=2880, cpus_per_task=16),
    log:
        "results/logs/train_stage1/train_stage1.log",
    benchmark:
        "results/benchmarks/train_stage1/train_stage1.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/train_stage1.py"


# Generated answers for the test split's questions vs the reference answers: BERTScore F1 and
# presence agreement per question (eval.csv / eval.md), overall in metrics.json.
rule evaluate_stage1:
    input:
        model=STAGE1_MODEL,
        test="results/{dataset}/instructions/test.json",
        features="results/{dataset}/features/image/index.parquet",
    output:
        metrics="results/{dataset}/stage1/metrics.json",
        answers="results/{dataset}/stage1/answers.parquet",
        table="results/{dataset}/stage1/eval.csv",
        md="results/{dataset}/stage1/eval.md",
    params:
        evaluate=config["vlm"]["evaluate"],
    wildcard_constraints:
        dataset="|".join(PRETRAIN_DATASETS) if PRETRAIN_DATASETS else "NONE",
    threads: 1
    log:
        "results/logs/evaluate_stage1/{dataset}.log",
    benchmark:
        "results/benchmarks/evaluate_stage1/{dataset}.tsv"
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/evaluate_stage1.py"


STAGE_TARGETS.append(lambda: expand("results/{dataset}/stage1/metrics.json", dataset=PRETRAIN_DATASETS))
