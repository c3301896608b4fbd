"""Rule probe_features: ridge probes of the image features against the demo's latent truth."""

from pathlib import Path

import torch

from ctsurv.imaging.probe import probe_dataset
from ctsurv.scripting import run_step


def main(smk):
    torch.set_num_threads(smk.threads)
    probe_dataset(
        Path(smk.input.index).parent,
        smk.input.qc,
        smk.input.truth,
        Path(smk.output.md).parent,
        encoder=smk.params.encoder,
        probe=smk.params.probe,
        pretrained=bool(smk.input.checkpoint),
    )


run_step(snakemake, main)  # noqa: F821
