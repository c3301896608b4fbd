"""Rule merge_qc: the preprocessing shards' QC rows as one QC table, and the montage."""

from pathlib import Path

import pandas as pd

from ctsurv.imaging.qc import qc_montage, sample_studies, write_qc_table
from ctsurv.imaging.sharded import merge_qc_tables
from ctsurv.scripting import run_step


def main(smk):
    opts = smk.params.imaging
    cohort = pd.read_parquet(smk.input.cohort, columns=["study_id"])
    qc = merge_qc_tables(list(smk.input.shards), cohort)
    write_qc_table(qc, smk.output.qc)
    usable = qc.loc[qc["status"] != "bad", "study_id"].tolist()
    qc_montage(Path(smk.output.qc).parent, sample_studies(usable, opts["qc_sample"]), smk.output.montage, spacing=opts["spacing"])


run_step(snakemake, main)  # noqa: F821
