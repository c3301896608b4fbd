# ctsurv: CT reports + volumes + clinical data + follow-up -> a 3D CT vision-language
# survival model and the evidence that it works.  Wiring only: logic lives in src/ctsurv.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/mining.smk"
include: "rules/extraction.smk"
include: "rules/review.smk"
include: "rules/imaging.smk"
include: "rules/training.smk"
include: "rules/vlm.smk"
include: "rules/evaluation.smk"
include: "rules/stage2.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
