"""Rule pretrain_encoder: the small I3ResNet trained on phenotype codes + reports (Merlin's signals)."""

import torch

from ctsurv.imaging.pretrain import pretrain_cohort
from ctsurv.scripting import run_step


def main(smk):
    torch.set_num_threads(smk.threads)
    pretrain_cohort(
        smk.input.cohort,
        smk.input.qc,
        smk.input.phenotypes,
        smk.output.checkpoint,
        encoder=smk.params.encoder,
        settings=smk.params.settings,
        text_model=smk.params.text_model,
        summary_out=smk.output.summary,
    )


run_step(snakemake, main)  # noqa: F821
