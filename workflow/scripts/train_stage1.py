"""Rule train_stage1: W + decoder on the pretrain instruction data (resumes after a kill)."""

import torch

from ctsurv.scripting import run_step
from ctsurv.vlm.stage1 import Stage1Data, run_stage1_job


def main(smk):
    torch.set_num_threads(smk.threads)
    data = [Stage1Data(instructions, features) for instructions, features in smk.params.data]
    run_stage1_job(data, smk.params.decoder, smk.output.model, smk.params.vlm, lock_dir=smk.params.lock_dir,
                   imaging=smk.params.imaging)


run_step(snakemake, main)  # noqa: F821
