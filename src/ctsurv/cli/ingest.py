"""``ctsurv ingest``: read one dataset through its adapter into a validated cohort table."""

from __future__ import annotations

from pathlib import Path

from ..resources import config_schema


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="build a dataset's cohort table (typed, split by patient, validated)",
        description="Read dataset NAME of the config through its adapter (demo, manifest, ct_rate, inspect), "
        "type the clinical columns, assign patient-level splits, validate, and write the cohort Parquet.",
    )
    parser.add_argument("--config", required=True, type=Path, help="config YAML (e.g. config/config.yaml)")
    parser.add_argument("--dataset", required=True, help="a key of 'datasets' in the config")
    parser.add_argument("--out", required=True, type=Path, help="cohort .parquet to write")
    parser.add_argument("--schema", type=Path, default=config_schema(), help="config schema (default: ctsurv's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_yaml, validate_config
    from ..data.adapters import input_files
    from ..data.cohort import build_cohort, write_cohort
    from ..errors import ConfigError
    from .checks import check_outputs

    config = validate_config(load_yaml(args.config), schema=args.schema)
    if args.dataset not in config["datasets"]:
        raise ConfigError(f"{args.config}: no dataset '{args.dataset}' under 'datasets' (have: {', '.join(config['datasets'])})")
    spec = config["datasets"][args.dataset]
    check_outputs([("--out", args.out)], inputs=[args.config, args.schema, *input_files(spec)])
    cohort = build_cohort(args.dataset, spec, config)
    write_cohort(cohort, args.out, spec)
    counts = cohort["split"].value_counts().to_dict()
    print(f"wrote {args.out}: {len(cohort)} studies, {cohort['patient_id'].nunique()} patients, splits {counts}")
    return 0
