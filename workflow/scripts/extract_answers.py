"""Rule extract_answers: one shard of a cohort's reports through the configured backend."""

import pandas as pd

from ctsurv.extraction.backends import backend_session
from ctsurv.extraction.extract import extract_answers, write_answers
from ctsurv.extraction.questions import load_questions
from ctsurv.scripting import run_step


def main(smk):
    cfg = smk.params.extraction
    questions = load_questions(smk.input.questions)
    cohort = pd.read_parquet(smk.input.cohort, columns=["study_id", "report"])
    with backend_session(cfg, server_log=smk.log.server, lock_dir=smk.params.lock_dir) as backend:
        answers = extract_answers(
            cohort,
            "study_id",
            "report",
            backend,
            questions,
            cache_dir=cfg["cache_dir"],
            shard=(int(smk.wildcards.shard), smk.params.n_shards),
            batch_size=cfg["batch_size"],
            source=smk.input.cohort,
        )
    write_answers(answers, smk.output.answers)


run_step(snakemake, main)  # noqa: F821
