"""Rule mine_words: word table, top medical words and bar plot of a cohort's reports."""

import pandas as pd

from ctsurv.mining import write_mining_outputs
from ctsurv.scripting import run_step


def main(smk):
    reports = pd.read_parquet(smk.input.cohort, columns=["report"])["report"]
    opts = smk.params.mining
    write_mining_outputs(
        reports,
        smk.output.words,
        smk.output.top,
        smk.output.plot,
        top_n=opts["top_n"],
        plot_top=opts["plot_top"],
        english_floor=opts["english_floor"],
        min_doc_fraction=opts["min_doc_fraction"],
    )


run_step(snakemake, main)  # noqa: F821
