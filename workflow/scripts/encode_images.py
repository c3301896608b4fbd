"""Rule encode_images: the image encoder over one shard of the preprocessed cache into the shard's store."""

from pathlib import Path

import torch

from ctsurv.imaging.encode import encode_dataset
from ctsurv.scripting import run_step


def main(smk):
    torch.set_num_threads(smk.threads)
    encode_dataset(smk.input.qc, Path(smk.output.index).parent, smk.params.encoder, lock_dir=smk.params.lock_dir,
                   shard=(int(smk.wildcards.shard), smk.params.n_shards))


run_step(snakemake, main)  # noqa: F821
