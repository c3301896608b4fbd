"""Rule evaluate_stage1: answers on the test split, BERTScore F1 and presence agreement, and the
same with zeroed visual tokens (does the model use the image?)."""

from pathlib import Path

import torch

from ctsurv.scripting import run_step
from ctsurv.vlm.stage1 import evaluate_stage1_with_control, write_stage1_evaluation


def main(smk):
    torch.set_num_threads(smk.threads)
    features = Path(smk.input.features).parent
    scored, summary, metrics = evaluate_stage1_with_control(smk.input.model, smk.input.test, features, smk.params.evaluate)
    write_stage1_evaluation(scored, summary, metrics, smk.output.answers, smk.output.table, smk.output.md,
                            smk.output.metrics)


run_step(snakemake, main)  # noqa: F821
