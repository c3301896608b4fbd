"""Rule predict_stage2: six questions per patient -> per-question and per-patient predictions."""

import pandas as pd
import torch

from ctsurv.gpu import gpu_slots
from ctsurv.scripting import run_step
from ctsurv.extraction.questions import load_questions
from ctsurv.vlm.stage2 import cohort_sentences, predict_stage2


def main(smk):
    torch.set_num_threads(smk.threads)
    cohort = pd.read_parquet(smk.input.cohort)
    with gpu_slots(1, lock_dir=smk.params.lock_dir, allow_cpu=True):
        predict_stage2(
            smk.input.model,
            {"train": smk.input.train, "val": smk.input.val, "test": smk.input.test},
            cohort,
            smk.input.features.rsplit("/", 1)[0],
            smk.output.questions,
            smk.output.predictions,
            smk.output.survival,
            batch_size=smk.params.predict["batch_size"],
            max_new_tokens=smk.params.predict["max_new_tokens"],
            train_questions=smk.params.predict["train_questions"],
            questions=load_questions(smk.input.questions),
            sentences=cohort_sentences(cohort, smk.params.spec),
            weights=smk.params.weights,
        )


run_step(snakemake, main)  # noqa: F821
