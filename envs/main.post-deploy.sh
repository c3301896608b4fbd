#!/usr/bin/env bash
# Snakemake runs this once in the new environment of envs/main.yaml (--sdm conda), from a
# copy under .snakemake/conda/ and in the run's working directory, so it cannot find the
# checkout from its own path: rules/common.smk exports CTSURV_SOURCE, the folder of the
# Snakefile.  Editable, so the rules run the checkout's code as it is now.
set -euo pipefail
source_dir="${CTSURV_SOURCE:?CTSURV_SOURCE is not set: run the workflow through its Snakefile (rules/common.smk sets it)}"
if [ ! -f "$source_dir/pyproject.toml" ]; then
    echo "CTSURV_SOURCE=$source_dir holds no pyproject.toml: it must be the ctsurv checkout" >&2
    exit 1
fi
python -m pip install -e "$source_dir"
