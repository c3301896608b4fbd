"""Rule merge_answers: the shard answer tables joined into results/{dataset}/qa/answers.parquet."""

import logging

from ctsurv.extraction.extract import merge_shards, write_answers
from ctsurv.scripting import run_step


def main(smk):
    answers = merge_shards(list(smk.input.shards))
    counts = answers["status"].value_counts().to_dict()
    logging.getLogger("ctsurv").info("merged %d shards: %d answers %s", len(smk.input.shards), len(answers), counts)
    write_answers(answers, smk.output.answers)


run_step(snakemake, main)  # noqa: F821
