"""Rule preprocess_ct: Merlin's chain on every study into the cache, QC table and montage."""

from pathlib import Path

import pandas as pd

from ctsurv.imaging.cohort_cache import preprocess_cohort
from ctsurv.imaging.qc import qc_montage, sample_studies, write_qc_table
from ctsurv.scripting import run_step


def main(smk):
    opts = smk.params.imaging
    cache_dir = Path(smk.output.qc).parent
    cohort = pd.read_parquet(smk.input.cohort)
    qc = preprocess_cohort(
        cohort,
        cache_dir,
        spacing=opts["spacing"],
        size=opts["size"],
        workers=smk.threads,
        threads=smk.threads,
        on_bad_image=opts["on_bad_image"],
        precision=opts["cache_precision"],
    )
    write_qc_table(qc, smk.output.qc)
    usable = qc.loc[qc["status"] != "bad", "study_id"].tolist()
    qc_montage(cache_dir, sample_studies(usable, opts["qc_sample"]), smk.output.montage, spacing=opts["spacing"])


run_step(snakemake, main)  # noqa: F821
