"""Rule train_baseline: fit one survival baseline on a cohort, write risks and curves, then its
test metrics and Kaplan-Meier figure."""

from pathlib import Path

from ctsurv.data.cohort import read_cohort
from ctsurv.scripting import run_step
from ctsurv.survival.baselines import evaluate_baseline, train_baseline
from ctsurv.survival.models import ModelSettings


def main(smk):
    survival = smk.params.survival
    stores = {kind: str(Path(smk.input[kind]).parent) for kind in ("text", "image") if kind in smk.input.keys()}
    out_dir = Path(smk.output.predictions).parent
    train_baseline(
        read_cohort(smk.input.cohort),
        model=smk.wildcards.model,
        modality=smk.wildcards.modality,
        clinical=smk.params.clinical,
        stores=stores,
        settings=ModelSettings.from_config(survival, seed=survival["seed"]),
        out_dir=out_dir,
        input_dims=survival.get("input_dims", [None]),
        weight_decays=survival.get("weight_decays"),
    )
    evaluate_baseline(
        out_dir,
        title=f"{smk.wildcards.dataset}: {smk.wildcards.model} ({smk.wildcards.modality})",
        n_boot=survival["bootstrap"]["n"],
        seed=survival["bootstrap"]["seed"],
        min_at_risk=survival["km_min_at_risk"],
    )


run_step(snakemake, main)  # noqa: F821
