"""Rule evaluate_stage2: test metrics, validation c-index, BERTScore and the KM figure of one joint model."""

import json

import torch

from ctsurv.report.bertscore import BertScoreModel
from ctsurv.report.evaluation import evaluate_stage2
from ctsurv.scripting import run_step
from ctsurv.survival.evaluation import check_survival, read_predictions, read_table


def main(smk):
    torch.set_num_threads(smk.threads)
    survival, wc = smk.params.survival, smk.wildcards
    metrics = evaluate_stage2(
        read_predictions(smk.input.predictions),
        read_table(smk.input.survival, check_survival),
        read_table(smk.input.questions),
        smk.output.km,
        title=f"{wc.dataset}: ours ({wc.head}, {wc.pretrain} pre-training)",
        n_boot=survival["bootstrap"]["n"],
        seed=survival["bootstrap"]["seed"],
        min_at_risk=survival["km_min_at_risk"],
        bertscore_pairs=smk.params.bertscore["pairs"],
        bertscore_seed=smk.params.bertscore["seed"],
        bertscore_model=BertScoreModel.from_config(smk.params.evaluate),
    )
    with open(smk.output.metrics, "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)


run_step(snakemake, main)  # noqa: F821
