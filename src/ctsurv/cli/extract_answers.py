"""``ctsurv extract-answers``: answer the report questions for any report table."""

from __future__ import annotations

from pathlib import Path

from ..resources import questions_file
from .checks import device, int_at_least, non_negative_int, positive_float, positive_int


def _shard(text: str) -> tuple[int, int]:
    import argparse

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return i, n


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "extract-answers",
        help="answer the six report questions for a report table (rules, local LM or OpenAI-compatible server)",
        description="Answer the questions of a questions file for every report of a table (CSV, TSV or "
        "Parquet) and write the answers table (study_id, question_id, answer, status, error, extractor, "
        "prompt_hash) to --out. Answers are cached in --cache-dir: re-running answers only new reports.",
    )
    parser.add_argument("reports", type=Path, help="report table (.csv, .tsv or .parquet)")
    parser.add_argument("--id-column", required=True, help="column of unique study ids")
    parser.add_argument("--text-column", required=True, help="column of report text")
    parser.add_argument("--backend", choices=["rules", "transformers", "openai"], default="rules")
    parser.add_argument("--model", help="local model folder or GGUF file (transformers) or served model name (openai)")
    parser.add_argument("--gguf-file", help="GGUF file name inside --model (transformers)")
    parser.add_argument("--url", help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--questions", type=Path, default=questions_file(),
                        help="questions file (default: the paper's six questions, packaged with ctsurv)")
    parser.add_argument("--out", required=True, type=Path, help="answers table to write (.parquet)")
    parser.add_argument("--cache-dir", type=Path, help="answer cache folder (default: no cache)")
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N", help="answer only shard I of N (default 0/1)")
    parser.add_argument("--max-tokens", type=int_at_least(16), default=512, help="reply length bound in tokens (default 512)")
    parser.add_argument("--concurrency", type=positive_int, default=16, help="requests in flight / generation batch (default 16)")
    parser.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--retries", type=non_negative_int, default=2, help="extra attempts per report (default 2)")
    parser.add_argument("--device", type=lambda text: text if text == "auto" else device(text), choices=["cpu", "cuda", "auto"],
                        default="cpu", help="transformers device")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="reports per cache file (default 64)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..extraction.backends import make_backend
    from ..extraction.extract import extract_answers, read_report_table, write_answers
    from ..extraction.questions import load_questions

    from .checks import check_outputs

    check_outputs([("--out", args.out)], inputs=[args.reports, args.questions], folders=[("--cache-dir", args.cache_dir)])
    questions = load_questions(args.questions)
    reports = read_report_table(args.reports)
    if args.text_column in reports.columns:
        from ..data.tables import check_has_text

        check_has_text(reports[args.text_column], args.reports, args.text_column)
    backend = make_backend(
        {
            "backend": args.backend,
            "model": args.model,
            "gguf_file": args.gguf_file,
            "url": args.url,
            "max_tokens": args.max_tokens,
            "concurrency": args.concurrency,
            "timeout_s": args.timeout,
            "retries": args.retries,
            "device": args.device,
        }
    )
    answers = extract_answers(
        reports,
        args.id_column,
        args.text_column,
        backend,
        questions,
        cache_dir=args.cache_dir,
        shard=args.shard,
        batch_size=args.batch_size,
        source=str(args.reports),
    )
    write_answers(answers, args.out)
    counts = answers["status"].value_counts().to_dict()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "not_mentioned", "failed"))
    print(f"wrote {args.out}: {answers['study_id'].nunique()} studies, {len(answers)} answers ({summary})")
    return 0
