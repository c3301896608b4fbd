"""Rule preprocess_ct: Merlin's chain on one shard's studies into the cache; the shard's QC rows."""

from pathlib import Path

import pandas as pd

from ctsurv.imaging.qc import write_qc_table
from ctsurv.imaging.sharded import preprocess_shard
from ctsurv.scripting import run_step


def main(smk):
    opts = smk.params.imaging
    cache_dir = Path(smk.output.qc).parent.parent  # results/{dataset}/ct
    cohort = pd.read_parquet(smk.input.cohort)
    qc = preprocess_shard(
        cohort,
        cache_dir,
        (int(smk.wildcards.shard), smk.params.n_shards),
        spacing=opts["spacing"],
        size=opts["size"],
        workers=smk.threads,
        threads=smk.threads,
        on_bad_image=opts["on_bad_image"],
        precision=opts["cache_precision"],
    )
    write_qc_table(qc, smk.output.qc)


run_step(snakemake, main)  # noqa: F821
