#!/usr/bin/env bash
# Set up ctsurv's environment (if needed) and run the demo workflow or the tests.
#
#   bash bootstrap.sh demo [snakemake args...]   whole DAG on the embedded demo cohort
#   bash bootstrap.sh test [pytest args...]      the test suite
#
# Needs only Python >= 3.10 with venv and pip.  The environment lives in .venv (or
# $CTSURV_VENV) and is re-installed only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"

venv=${CTSURV_VENV:-.venv}
# Config and reports hold non-ASCII text (e.g. °F); don't depend on the caller's locale.
export PYTHONUTF8=1
python=${PYTHON:-python3}

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        echo "bootstrap: creating the environment in $venv" >&2
        "$python" -m venv "$venv"
    fi
    local stamp="$venv/.ctsurv-stamp"
    local want
    want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "bootstrap: installing ctsurv and its dependencies (first run: a few minutes)" >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        # A GPU machine keeps the CUDA torch it has; elsewhere the CPU build is installed first,
        # so that no dependency pulls a multi-GB CUDA build.
        if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
            "$venv/bin/python" -m pip install --quiet "torch==2.13.0"
        fi
        "$venv/bin/python" -m pip install --quiet -e ".[test]"
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        setup
        # GPUS=N limits GPU jobs to N devices at a time (e.g. GPUS=2); without it GPU steps
        # run on the CPU on a machine that has none.
        extra=()
        if [ -n "${GPUS:-}" ]; then extra=(--resources "gpu=$GPUS"); fi
        "$venv/bin/snakemake" --cores "${CORES:-$(nproc)}" "${extra[@]}" "$@"
        # Snakemake's HTML report of the finished run (every captioned table and figure:
        # Table 2, Fig. 3, the Kaplan-Meier plots).  Skipped when arguments were given
        # (a dry run, a single target), which may leave the report's inputs missing.
        if [ $# -eq 0 ]; then
            "$venv/bin/snakemake" --report results/report/report.html
            echo "bootstrap: report in results/report/report.html, results in results/report/results.md" >&2
        fi
        ;;
    test)
        setup
        exec "$venv/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash bootstrap.sh demo|test [args...]" >&2
        exit 2
        ;;
esac
