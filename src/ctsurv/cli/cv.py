"""``ctsurv cv``: cross-validated c-index of a survival model on any table."""

from __future__ import annotations

import json
from pathlib import Path

from .checks import fraction, int_at_least, non_negative_float, positive_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "cv",
        help="cross-validated c-index of coxph, deepsurv or deephit on a table",
        description="K-fold cross-validated Harrell c-index of a survival model on a CSV or Parquet table. "
        "Categorical columns are one-hot encoded; imputation and scaling are fit inside each training fold. "
        "Prints each fold and mean ± sd, and writes them as JSON.",
    )
    parser.add_argument("table", type=Path, help="table (.csv, .tsv or .parquet), one row per patient")
    parser.add_argument("--time", required=True, help="follow-up time column (> 0)")
    parser.add_argument("--event", required=True, help="event column (1 = event, 0 = censored)")
    parser.add_argument("--model", required=True, choices=["coxph", "deepsurv", "deephit"])
    parser.add_argument("--features", nargs="+", metavar="COL",
                        help="feature columns (default: all others except study_id and patient_id)")
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--folds", type=int_at_least(2), default=5, help="number of stratified folds (default 5)")
    folds.add_argument("--folds-file", type=Path, metavar="F",
                       help='JSON {"folds": [{"train_idx": [...], "test_idx": [...]}, ...]} with 0-based row positions')
    parser.add_argument("--seed", type=int, default=42, help="seed of the folds and of the networks (default 42)")
    parser.add_argument("--out", type=Path, help="JSON output (default: <table stem>.cv_<model>.json beside the table)")
    net = parser.add_argument_group("network and CoxPH settings")
    net.add_argument("--lr", type=positive_float, default=1e-4)
    net.add_argument("--batch-size", type=positive_int, default=32)
    net.add_argument("--max-epochs", type=positive_int, default=500)
    net.add_argument("--patience", type=positive_int, default=50)
    net.add_argument("--hidden", type=positive_int, nargs="+", default=[32, 32], help="hidden layer widths (default 32 32)")
    net.add_argument("--num-durations", type=int_at_least(2), default=20, help="DeepHit time cuts (default 20)")
    net.add_argument("--cuts", choices=["quantile", "equidistant"], default="quantile", help="DeepHit cut scheme")
    net.add_argument("--alpha", type=fraction, default=0.2, help="DeepHit: alpha * NLL + (1 - alpha) * ranking (default 0.2)")
    net.add_argument("--sigma", type=positive_float, default=0.1, help="DeepHit ranking temperature (default 0.1)")
    net.add_argument("--penalizer", type=non_negative_float, default=1e-4, help="CoxPH ridge penalty (default 1e-4)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..survival.cv import cross_validate, read_feature_table, read_folds
    from ..survival.fit import TrainConfig
    from ..survival.models import ModelSettings, NetConfig
    from .checks import check_outputs

    out = args.out or args.table.with_name(f"{args.table.stem}.cv_{args.model}.json")
    check_outputs([("--out", out)], inputs=[args.table, args.folds_file])
    table = read_feature_table(args.table)
    folds = read_folds(args.folds_file, len(table)) if args.folds_file else None
    settings = ModelSettings(
        penalizer=args.penalizer,
        net=NetConfig(hidden=tuple(args.hidden)),
        train=TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience, seed=args.seed),
        num_durations=args.num_durations,
        scheme=args.cuts,
        alpha=args.alpha,
        sigma=args.sigma,
    )
    result = cross_validate(table, args.time, args.event, args.model, features=args.features, folds=folds,
                            k=args.folds, seed=args.seed, settings=settings, source=args.table)
    result["table"] = str(args.table)
    result["folds_source"] = str(args.folds_file) if args.folds_file else f"stratified {args.folds}-fold, seed {args.seed}"
    for fold in result["folds"]:
        print(f"fold {fold['fold']}: c-index {fold['cindex']:.4f}  (train {fold['n_train']}, test {fold['n_test']}, "
              f"{fold['events_test']} events, fit {fold['fit_seconds']:.2f} s)")
    print(f"{args.model}: c-index {result['mean']:.4f} ± {result['sd']:.4f} (mean ± sd over {len(result['folds'])} folds)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return 0
