"""Rule pretraining_figure: the paper's Fig. 3, KM curves with and without pre-training."""

from ctsurv.report.paper import pretraining_figure
from ctsurv.scripting import run_step


def main(smk):
    pretraining_figure(smk.input.with_pretraining, smk.input.without_pretraining, smk.output.png,
                       title=f"{smk.wildcards.dataset}, ours ({smk.wildcards.head})", min_at_risk=smk.params.min_at_risk)


run_step(snakemake, main)  # noqa: F821
