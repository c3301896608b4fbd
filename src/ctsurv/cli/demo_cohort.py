"""``ctsurv demo-cohort``: write the synthetic demo datasets."""

from __future__ import annotations

from pathlib import Path

from .checks import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-cohort",
        help="write the synthetic demo datasets (volumes, reports, clinical, follow-up, gold answers)",
        description="Generate demo_pretrain, demo_lung and demo_pe under --out: NIfTI volumes and label "
        "maps, manifest.csv, gold_answers.parquet, truth.parquet and a README.md per dataset. "
        "The same seed and sizes give the same files.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per dataset)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--n-pretrain", type=int, default=150, help="studies in demo_pretrain (default 150)")
    parser.add_argument("--n-lung", type=int, default=200, help="patients in demo_lung (default 200)")
    parser.add_argument("--n-pe", type=int, default=200, help="patients in demo_pe (default 200)")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes rendering volumes (default 2)")
    parser.add_argument("--no-labels", action="store_true", help="do not write the tissue label maps")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..demo import generate_demo
    from ..errors import CtsurvError
    from .checks import check_outputs

    for name in ("n_pretrain", "n_lung", "n_pe"):
        if getattr(args, name) < 1:
            raise CtsurvError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    check_outputs(folders=[("--out", args.out)])
    folders = generate_demo(
        args.out,
        seed=args.seed,
        n_pretrain=args.n_pretrain,
        n_lung=args.n_lung,
        n_pe=args.n_pe,
        workers=args.workers,
        write_labels=not args.no_labels,
    )
    for name, folder in folders.items():
        print(f"wrote {name}: {folder}")
    return 0
