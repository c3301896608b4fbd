"""Dry-run a workflow and print each job's rule, wildcards and params as JSON lines.

    python tests/snakemake_job_params.py SNAKEFILE WORKDIR CONFIGFILE [CONFIGFILE ...] -- TARGET [TARGET ...]

``snakemake -n`` prints no params, so the tests that check what a job would be given (the paper's
settings in tests/test_paper_config.py) build the same dry run through Snakemake's API and read
the params of the DAG's jobs.  Run as a separate process: Snakemake's API changes the working
directory and logging of the process that calls it.
"""

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from snakemake.api import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, SnakemakeApi, StorageSettings

    split = argv.index("--")
    snakefile, workdir, *configfiles = argv[:split]
    targets = argv[split + 1:]
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(configfiles=[Path(c) for c in configfiles]),
                                storage_settings=StorageSettings(), workdir=Path(workdir), snakefile=Path(snakefile))
        dag = workflow.dag(DAGSettings(targets=set(targets)))
        dag.execute_workflow(executor="dryrun")
        for job in workflow._workflow.dag.jobs:
            line = {"rule": job.rule.name, "wildcards": dict(job.wildcards), "params": dict(job.params)}
            print("JOB " + json.dumps(line, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
