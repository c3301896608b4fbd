"""Rule demo_decoder: BPE tokenizer + small LlamaForCausalLM warmed up on the pretrain reports."""

import torch

from ctsurv.scripting import run_step
from ctsurv.vlm.demo_decoder import DemoDecoderSettings, build_demo_decoder, cohort_reports


def main(smk):
    torch.set_num_threads(smk.threads)
    train, val = cohort_reports(smk.input.cohorts)
    build_demo_decoder(train, smk.output.folder, DemoDecoderSettings.from_dict(smk.params.settings), val_reports=val)


run_step(snakemake, main)  # noqa: F821
