"""Rule build_instructions: LLaVA-style conversation JSON per split."""

from pathlib import Path

from ctsurv.scripting import run_step


def main(smk):
    import pandas as pd

    from ctsurv.extraction.questions import load_questions
    from ctsurv.instructions import build_conversations, write_json

    records = build_conversations(
        pd.read_parquet(smk.input.final),
        pd.read_parquet(smk.input.cohort),
        load_questions(smk.input.questions),
        smk.params.spec,
        mode=smk.params.mode,
        project_root=Path.cwd(),  # Snakemake runs in the project: image paths relative to it
    )
    for split, records_of_split in records.items():
        write_json(records_of_split, smk.output[split])


run_step(snakemake, main)  # noqa: F821
