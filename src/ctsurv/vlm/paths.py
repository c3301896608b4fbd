"""Workflow paths of the vision-language model rules (rules/vlm.smk), as plain functions."""

from __future__ import annotations

DEMO_DECODER = "results/models/demo_decoder"
STAGE1_MODEL = "results/models/stage1"


def decoder_folder(vlm: dict) -> str:
    """The decoder folder: config ``vlm.decoder`` (a local folder, or ``packaged:NAME`` for a model
    shipped with ctsurv, e.g. the demo's ``packaged:demo-radllama``), or rule demo_decoder's
    output when it is null."""
    from ..resources import resolve_model

    return str(resolve_model(vlm["decoder"])) if vlm["decoder"] else DEMO_DECODER


def stage1_inputs(pretrain_datasets: list[str], vlm: dict) -> dict:
    """Instruction files, feature-store indexes and (demo) decoder that stage 1 reads."""
    inputs = {
        "instructions": [f"results/{d}/instructions/{s}.json" for d in pretrain_datasets for s in ("train", "val")],
        "features": [f"results/{d}/features/image/index.parquet" for d in pretrain_datasets],
    }
    if not vlm["decoder"]:
        inputs["decoder"] = DEMO_DECODER
    return inputs


def stage1_data(pretrain_datasets: list[str]) -> list[list[str]]:
    """(instruction folder, feature store) of each pretrain dataset."""
    return [[f"results/{d}/instructions", f"results/{d}/features/image"] for d in pretrain_datasets]
