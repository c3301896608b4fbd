"""``ctsurv review``: progress of the clinician review, and refreshing the clinician workbook.

Run from the workflow directory (paths in the config are relative to it).
"""

from __future__ import annotations

from pathlib import Path

from ..resources import config_schema

CONFIG_HELP = "config YAML (default: config/config.yaml here, else ctsurv's demo config)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("review", help="clinician review: progress and workbook refresh",
                                   description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    status = actions.add_parser("status", help="approved / corrected / rejected / pending per dataset and question",
                                description="Validate each dataset's clinician workbook against its answers and count decisions "
                                "(what apply_review would produce now).")
    status.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    status.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    status.add_argument("--schema", type=Path, default=config_schema(), help="config schema (default: ctsurv's)")
    status.set_defaults(func=run_status)

    update = actions.add_parser("update", help="replace a clinician workbook by a fresh export that keeps every decision",
                                description="Re-export DATASET's workbook from the current answers, carrying every decision over "
                                "(changed answers are flagged for review again); the old workbook is kept under reviews/backup/.")
    update.add_argument("dataset")
    update.add_argument("--reviewer", help="only this reviewer's workbook (default: all)")
    update.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    update.add_argument("--schema", type=Path, default=config_schema(), help="config schema (default: ctsurv's)")
    update.set_defaults(func=run_update)


def _config(args) -> dict:
    from ..config import load_yaml, validate_config
    from ..resources import default_config

    return validate_config(load_yaml(args.config or default_config()), schema=args.schema)


def _datasets(config: dict, wanted: list[str] | None) -> list[str]:
    from ..errors import ConfigError

    for name in wanted or []:
        if name not in config["datasets"]:
            raise ConfigError(f"no dataset '{name}' under 'datasets' (have: {', '.join(config['datasets'])})")
    return wanted or list(config["datasets"])


def run_status(args) -> int:
    from ..review.clinician import clinician_workbooks
    from ..review.status import review_status
    from ..review.steps import current_review
    from ..review.workbook import part_paths

    config = _config(args)
    for dataset in _datasets(config, args.dataset):
        answers = Path(f"results/{dataset}/qa/answers.parquet")
        workbooks = clinician_workbooks(config["review"], dataset)
        if not answers.exists():
            print(f"{dataset}: no answers yet ({answers} missing; run the workflow up to extract_answers)\n")
            continue
        parts = int(config["review"].get("parts") or 1)
        final, audit = current_review(answers, workbooks, parts)
        files = [p for base in workbooks.values() for p in part_paths(base, parts)]
        present = [str(p) for p in files if p.exists()]
        source = ", ".join(present) if present else "no workbook at " + ", ".join(map(str, files))
        print(f"{dataset} ({source})")
        print(review_status(final).to_string())
        unapplied = audit[~audit["applied"]]
        note = unapplied["note"].fillna("")
        outdated = int(note.str.startswith("extracted answer changed").sum())
        conflicts = unapplied[note.str.startswith("reviewers disagree")][["study_id", "question_id"]].drop_duplicates()
        if outdated:
            print(f"  {outdated} decision(s) concern answers that changed since export: run `ctsurv review update {dataset}`")
        if len(conflicts):
            print(f"  {len(conflicts)} answer(s) with disagreeing reviewers (pending until they agree):")
            for row in conflicts.itertuples(index=False):
                print(f"    {row.study_id} / {row.question_id}")
        print()
    return 0


def run_update(args) -> int:
    import pandas as pd

    from ..extraction.questions import load_questions
    from ..review.clinician import clinician_workbooks, update_clinician_workbook
    from ..errors import ConfigError, CtsurvError
    from ..resources import questions_for
    from ..review.steps import read_reports

    config = _config(args)
    (dataset,) = _datasets(config, [args.dataset])
    workbooks = clinician_workbooks(config["review"], dataset)
    if args.reviewer:
        if args.reviewer not in workbooks:
            raise ConfigError(f"no reviewer '{args.reviewer}' under review.reviewers (have: {', '.join(map(str, workbooks))})")
        workbooks = {args.reviewer: workbooks[args.reviewer]}
    answers_path = Path(f"results/{dataset}/qa/answers.parquet")
    if not answers_path.is_file():
        raise CtsurvError(f"{answers_path}: no answers yet; run the workflow up to extract_answers for {dataset} first "
                          "(run `ctsurv review` in the workflow folder)")
    answers = pd.read_parquet(answers_path)
    reports = read_reports(f"results/{dataset}/cohort.parquet")
    questions = load_questions(questions_for(config["extraction"]["questions"]))
    from ..review.workbook import part_paths
    from ..shards import shard_of

    parts = int(config["review"].get("parts") or 1)
    part = answers["study_id"].astype(str).map(lambda sid: shard_of(sid, parts))
    for workbook, k in ((p, k) for base in workbooks.values() for k, p in enumerate(part_paths(base, parts))):
        # a part holds the studies its hash names (as the export): update each with its own rows
        summary, backup = update_clinician_workbook(answers[part == k] if parts > 1 else answers, reports, questions, workbook)
        from ..review.clinician import added_columns

        kept, _ = added_columns(workbook)
        print(f"wrote {workbook}: {summary.rows} rows, {summary.carried} decisions kept, {summary.changed} changed answers to review again, "
              f"{summary.new} new rows, {summary.dropped} reviewed rows no longer extracted"
              + (f"; kept the column(s) you added: {', '.join(map(str, kept))}" if kept else "")
              + (f"; backup {backup}" if backup else ""))
    return 0
