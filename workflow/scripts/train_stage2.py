"""Rule train_stage2: one joint model (dataset x head x pre-training); resumes after a kill."""

import pandas as pd
import torch

from ctsurv.extraction.questions import load_questions
from ctsurv.gpu import gpu_slots
from ctsurv.scripting import run_step
from ctsurv.vlm.stage2 import run_stage2


def main(smk):
    torch.set_num_threads(smk.threads)
    with gpu_slots(1, lock_dir=smk.params.lock_dir, allow_cpu=True):
        run_stage2(
            {"train": smk.input.train, "val": smk.input.val},
            pd.read_parquet(smk.input.cohort),
            smk.input.features.rsplit("/", 1)[0],
            head=smk.wildcards.head,
            pretrain=smk.wildcards.pretrain,
            stage2=smk.params.stage2,
            vlm=smk.params.vlm,
            out=smk.output.model,
            stage1_dir=smk.input.get("stage1"),
            decoder_path=smk.params.decoder,
            questions=load_questions(smk.input.questions),
            imaging=smk.params.imaging,
            reference=smk.params.reference,
        )


run_step(snakemake, main)  # noqa: F821
