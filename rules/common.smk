# Shared helpers: config validation, dataset lookups, target lists.  No rule lives here.

import os
from pathlib import Path

from ctsurv.config import validate_config


# The checkout the workflow runs from, for envs/main.post-deploy.sh (snakemake --sdm conda
# installs ctsurv from it into the rules' environment).
os.environ["CTSURV_SOURCE"] = str(Path(workflow.basedir).resolve())

# Stops the run with a message that names the key and what was expected.
config = validate_config(config, schema=workflow.source_path("../workflow/schemas/config.schema.yaml"))

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
