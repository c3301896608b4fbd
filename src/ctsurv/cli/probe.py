"""``ctsurv probe``: cross-validated linear probes from a feature store to a table's columns."""

from __future__ import annotations

from pathlib import Path

from .checks import int_at_least, non_negative_int, positive_int

STORE_HOW = "write it with the workflow's encode_images rule or ctsurv encode-images"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="can these columns be read linearly from the image features? (ridge probes, R² / AUC)",
        description="Cross-validated ridge probes (standardised features) from a feature store's pooled "
        "features to each named column of a table, matched by study id. Continuous columns give R², "
        "binary ones ROC AUC, each with a 95 %% bootstrap interval. Writes probe.md and probe.json to --out.",
    )
    parser.add_argument("store", type=Path, help="feature store folder (with index.parquet), e.g. results/DATASET/features/image")
    parser.add_argument("table", type=Path, help="table (.csv, .tsv or .parquet) with one row per study")
    parser.add_argument("--columns", nargs="+", required=True, metavar="COL",
                        help="columns to probe; COL:present probes whether a column has a value (e.g. a finding's side)")
    parser.add_argument("--id-column", default="study_id", help="the table's study id column (default study_id)")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("NAME", "STORE"),
                        help="another feature store to probe on the same studies, shown beside the first (repeatable)")
    parser.add_argument("--name", default="features", help="name of the first store in the table (default features)")
    parser.add_argument("--feature", default="pooled", help="array of the store to probe (default pooled)")
    parser.add_argument("--folds", type=int_at_least(2), default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--bootstrap", type=positive_int, default=1000, help="bootstrap resamples of the intervals (default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of folds and bootstrap (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="folder for probe.md and probe.json")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..errors import DataError
    from ..probe import probe_stores, write_probe
    from .checks import check_inputs, check_outputs

    stores = {args.name: args.store, **{name: Path(path) for name, path in args.compare}}
    if len(stores) != 1 + len(args.compare):
        raise DataError("--name and --compare names must differ")
    flags = ["STORE"] + [f"--compare {name}" for name, _ in args.compare]
    check_inputs(files=[("TABLE", args.table, "table")],
                 folders=[(flag, path, "feature store", "index.parquet", STORE_HOW)
                          for flag, path in zip(flags, stores.values())])
    check_outputs(inputs=[args.table, *stores.values()], folders=[("--out", args.out)])
    check_outputs([("--out", args.out / "probe.md"), ("--out", args.out / "probe.json")],
                  inputs=[args.table, *stores.values()])
    result = probe_stores(stores, args.table, args.columns, id_column=args.id_column, feature=args.feature,
                          folds=args.folds, seed=args.seed, n_boot=args.bootstrap)
    js, md = write_probe(result, args.out, title=f"Linear probes: {args.store}")
    print(md.read_text(encoding="utf-8"))
    print(f"wrote {md} and {js}")
    return 0
