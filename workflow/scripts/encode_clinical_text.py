"""Rule encode_clinical_text: each study's clinical sentence through the text encoder."""

from pathlib import Path

import torch

from ctsurv.data.cohort import read_cohort
from ctsurv.data.sentences import clinical_sentence
from ctsurv.scripting import run_step
from ctsurv.text_encoder import encode_clinical_sentences


def main(smk):
    torch.set_num_threads(smk.threads)
    cohort = read_cohort(smk.input.cohort)
    sentences = [clinical_sentence(row, smk.params.spec) for _, row in cohort.iterrows()]
    opts = smk.params.text_encoder
    encode_clinical_sentences(cohort["study_id"].astype(str).tolist(), sentences, Path(smk.output.index).parent,
                              model_path=opts["model"], batch_size=opts["batch_size"], device="cpu")


run_step(snakemake, main)  # noqa: F821
