"""Rule merge_image_features: the shards' feature stores as one store, in the QC table's order."""

from pathlib import Path

from ctsurv.imaging.sharded import merge_feature_shards
from ctsurv.scripting import run_step


def main(smk):
    merge_feature_shards([Path(p).parent for p in smk.input.shards], smk.input.qc, Path(smk.output.index).parent)


run_step(snakemake, main)  # noqa: F821
