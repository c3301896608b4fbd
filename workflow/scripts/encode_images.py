"""Rule encode_images: the image encoder over the preprocessed cache into the feature store."""

from pathlib import Path

import torch

from ctsurv.imaging.encode import encode_dataset
from ctsurv.scripting import run_step


def main(smk):
    torch.set_num_threads(smk.threads)
    encode_dataset(smk.input.qc, Path(smk.output.index).parent, smk.params.encoder, lock_dir=smk.params.lock_dir)


run_step(snakemake, main)  # noqa: F821
