# Shared helpers: config validation, dataset lookups, target lists.  No rule lives here.

import os
from pathlib import Path

from ctsurv import rule_params
from ctsurv.config import check_input_paths, check_yaml_files, validate_config


# The checkout the workflow runs from, for envs/main.post-deploy.sh (snakemake --sdm conda
# installs ctsurv from it into the rules' environment).
# (A write, not a variable the user must set: hence no envvars directive.)
os.environ.update(CTSURV_SOURCE=str(Path(workflow.basedir).resolve()))

# Stops the run with a message that names the key and what was expected.  Snakemake's own
# YAML reader keeps the last of two equal keys silently: re-read the files to refuse that.
check_yaml_files(workflow.configfiles)
config = validate_config(config, schema=workflow.source_path("../workflow/schemas/config.schema.yaml"))
# Every input path the rules read (models, tables, folders) exists, before the first job.
check_input_paths(config)

DATASETS = list(config["datasets"])
SURVIVAL_DATASETS = [d for d, spec in config["datasets"].items() if spec["role"] == "survival"]
PRETRAIN_DATASETS = [d for d, spec in config["datasets"].items() if spec["role"] == "pretrain"]
DEMO_DATASETS = [d for d, spec in config["datasets"].items() if spec["adapter"] == "demo"]


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "NONE",


def step_resources(gpus, **sizes):
    """A rule's resources from the GPUs it needs (ctsurv.gpu.step_resources): GPU steps go to
    config gpu.slurm_partition, the others keep the cluster profile's CPU defaults."""
    from ctsurv.gpu import step_resources as resources

    return resources(gpus, config["gpu"]["slurm_partition"], **sizes)


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def demo_manifest(dataset):
    return f"{config['demo']['outdir']}/{dataset}/manifest.csv"


def demo_size(wildcards):
    """Number of studies (pretrain) or patients of a demo dataset."""
    key = {"demo_pretrain": "n_pretrain", "demo_lung": "n_lung", "demo_pe": "n_pe"}[wildcards.dataset]
    return config["demo"][key]


def pretrained_encoder_file():
    """The checkpoint rule pretrain_encoder writes, or None when it is not used (a Merlin
    checkpoint is given, or imaging.encoder.pretrain is false: seeded random weights)."""
    encoder = config["imaging"]["encoder"]
    if encoder["checkpoint"] is not None or not encoder.get("pretrain", False):
        return None
    dataset = config["imaging"]["pretrain"].get("dataset") or (PRETRAIN_DATASETS[0] if PRETRAIN_DATASETS else None)
    if dataset not in DATASETS:
        raise ValueError(f"imaging.pretrain.dataset {dataset!r} is not a dataset of the config; name a pretrain dataset or set imaging.encoder.pretrain: false")
    return f"results/{dataset}/encoder/encoder.safetensors"


def encoder_checkpoint_input(wildcards):
    """Input of the rules that encode images: the encoder's weight file (imaging.encoder.checkpoint
    resolved: packaged:NAME is a file shipped with ctsurv), the pretrained checkpoint, or nothing."""
    path = pretrained_encoder_file()
    if path is None and config["imaging"]["encoder"]["checkpoint"] is not None:
        from ctsurv.imaging.merlin import checkpoint_file

        path = str(checkpoint_file(config["imaging"]["encoder"]["checkpoint"]))
    return [path] if path else []


def encoder_settings():
    """imaging.encoder with the pretrained checkpoint filled in when pretraining is on."""
    path = pretrained_encoder_file()
    return {**config["imaging"]["encoder"], **({"checkpoint": path} if path else {})}


def pretrain_phenotypes(wildcards):
    """The phenotype table of the pretrain dataset (default: the demo generator's)."""
    path = config["imaging"]["pretrain"].get("phenotypes")
    return path or f"{config['demo']['outdir']}/{wildcards.dataset}/phenotypes.csv"


def all_targets():
    targets = expand("results/{dataset}/cohort.parquet", dataset=DATASETS)
    targets += stage_targets()
    return targets


# Each stage's .smk appends its final outputs here (a list of callables of no argument).
STAGE_TARGETS = []


def stage_targets():
    out = []
    for make in STAGE_TARGETS:
        out += make()
    return out
