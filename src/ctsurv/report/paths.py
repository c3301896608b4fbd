"""Paths of the stage-2 runs and the report, shared by the rules and their targets.

Plain functions of the config (no Snakemake import), so the rules stay free of helper
definitions and the layout is unit tested.
"""

from __future__ import annotations


def stage2_run_dir(dataset: str, head: str, pretrain: str) -> str:
    return f"results/{dataset}/stage2/{head}_{pretrain}"


def stage2_inputs(dataset: str, pretrain: str, decoder: str | None, stage1_model: str, demo_decoder: str) -> dict:
    """Inputs of train_stage2: instruction data, cohort, features, and the stage-1 model
    (``with``) or the demo decoder (``without``, when no decoder folder is configured)."""
    inputs = {
        "train": f"results/{dataset}/instructions/train.json",
        "val": f"results/{dataset}/instructions/val.json",
        "cohort": f"results/{dataset}/cohort.parquet",
        "features": f"results/{dataset}/features/image/index.parquet",
    }
    if pretrain == "with":
        inputs["stage1"] = stage1_model
    elif not decoder:
        inputs["decoder"] = demo_decoder
    return inputs


def stage2_runs(dataset: str, stage2: dict, name: str) -> list[str]:
    """One file (e.g. ``predictions.parquet``) of every stage-2 run of a dataset (heads x pre-training)."""
    return [f"{stage2_run_dir(dataset, h, p)}/{name}" for h in stage2["heads"] for p in stage2["pretrain"]]


def pretraining_figures(datasets, stage2: dict) -> list[str]:
    """Fig. 3 per dataset and head; none unless both pre-training settings run."""
    if not {"with", "without"} <= set(stage2["pretrain"]):
        return []
    return [f"results/{d}/results/km_pretraining_{h}.png" for d in datasets for h in stage2["heads"]]
