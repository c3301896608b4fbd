"""Rule evaluate_baseline: test metrics and the Kaplan-Meier figure of one baseline."""

import json

import pandas as pd

from ctsurv.scripting import run_step
from ctsurv.survival.evaluation import evaluate_predictions


def main(smk):
    survival = smk.params.survival
    metrics = evaluate_predictions(
        pd.read_parquet(smk.input.predictions),
        pd.read_parquet(smk.input.survival),
        smk.output.km,
        title=f"{smk.wildcards.dataset}: {smk.wildcards.model} ({smk.wildcards.modality})",
        n_boot=survival["bootstrap"]["n"],
        seed=survival["bootstrap"]["seed"],
        min_at_risk=survival["km_min_at_risk"],
    )
    with open(smk.output.metrics, "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)


run_step(snakemake, main)  # noqa: F821
