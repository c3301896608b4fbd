"""Output paths of the survival baselines, shared by the workflow rules and their targets.

Plain functions of the config (no Snakemake import), so the rules stay free of helper
definitions and the layout is unit tested.
"""

from __future__ import annotations

STORES = {"clinical": [], "text": ["text"], "image": ["image"], "both": ["text", "image"]}


def baseline_runs(survival: dict) -> list[tuple[str, str]]:
    """(model, modality) pairs: CoxPH on the clinical table, every head on every modality.

    Args:
        survival: the validated config section ``survival``.
    """
    runs = [("coxph", "clinical")] if "clinical" in survival["modalities"] else []
    return runs + [(h, m) for h in survival["heads"] for m in survival["modalities"]]


def baseline_dirs(dataset: str, survival: dict) -> list[str]:
    """``results/{dataset}/baselines/{model}_{modality}`` of every baseline."""
    return [f"results/{dataset}/baselines/{model}_{modality}" for model, modality in baseline_runs(survival)]


def feature_inputs(dataset: str, modality: str) -> dict[str, str]:
    """The feature-store index files a modality reads, keyed text / image."""
    return {kind: f"results/{dataset}/features/{kind}/index.parquet" for kind in STORES[modality]}


def baseline_files(dataset: str, survival: dict, name: str) -> list[str]:
    """One file (e.g. ``predictions.parquet``, ``metrics.json``, ``km.png``) of every baseline."""
    return [f"{d}/{name}" for d in baseline_dirs(dataset, survival)]


def truth_input(dataset: str, demo_datasets, demo_outdir: str) -> dict[str, str]:
    """The known hazard of a demo dataset (for the oracle c-index); nothing for real data."""
    return {"truth": f"{demo_outdir}/{dataset}/truth.parquet"} if dataset in demo_datasets else {}
