"""``ctsurv mine-words``: word frequencies and top medical words of any report table."""

from __future__ import annotations

from pathlib import Path

from .checks import fraction, positive_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "mine-words",
        help="word frequencies, top medical words and bar plot of a report table",
        description="Count words over a report table (CSV or Parquet) and rank those over-represented "
        "compared with general English. Writes words.parquet, top_words.csv and top_words.png to --out.",
    )
    parser.add_argument("reports", type=Path, help="report table (.csv, .tsv or .parquet)")
    parser.add_argument("--text-column", required=True, help="column holding the report text")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--top-n", type=positive_int, default=100, help="words in top_words.csv (default 100)")
    parser.add_argument("--plot-top", type=positive_int, default=10, help="words in the bar plot (default 10)")
    parser.add_argument("--english-floor", type=positive_float, default=1e-6, help="smoothing of the score (default 1e-6)")
    parser.add_argument("--min-doc-fraction", type=fraction, default=0.01,
                        help="fraction of reports a word must appear in to be ranked (default 0.01)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..mining import read_report_texts, write_mining_outputs
    from .checks import check_outputs

    names = ("words.parquet", "top_words.csv", "top_words.png")
    check_outputs([("--out", args.out / n) for n in names], inputs=[args.reports], folders=[("--out", args.out)])
    texts = read_report_texts(args.reports, args.text_column)
    from ..data.tables import check_has_text

    check_has_text(texts, args.reports, args.text_column)
    write_mining_outputs(
        texts,
        args.out / "words.parquet",
        args.out / "top_words.csv",
        args.out / "top_words.png",
        top_n=args.top_n,
        plot_top=args.plot_top,
        english_floor=args.english_floor,
        min_doc_fraction=args.min_doc_fraction,
    )
    print(f"wrote {args.out}/words.parquet, top_words.csv, top_words.png")
    return 0
