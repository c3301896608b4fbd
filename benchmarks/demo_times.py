"""Where the demo's time goes: per-rule sums of Snakemake's benchmark files.

    python benchmarks/demo_times.py [--root results/benchmarks] [--top 10]

Every rule writes ``results/benchmarks/{rule}/....tsv`` (columns ``s``, ``cpu_time``,
``max_rss``, ...).  Prints the total wall and CPU seconds of all jobs (the sum, not the
elapsed time of a parallel run), the rules ordered by wall time, and the longest single jobs.

Then the run's timeline: a job ended when its benchmark file was written (its mtime) and
started ``s`` seconds before, so the elapsed time from the first start to the last end, the
mean number of jobs running, and the longest stretches with fewer jobs running than
``--cores`` (where cores sat idle: a single long job everything waits on) are printed too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def collect(root: str | Path) -> pd.DataFrame:
    """One row per benchmark file: rule, job (the path below the rule), s, cpu_time, max_rss (MB)."""
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty or "s" not in table:
            continue
        last = table.iloc[-1]  # a benchmark file holds one row per repeat; the last run counts
        rel = path.relative_to(root)
        end = path.stat().st_mtime
        rows.append({"rule": rel.parts[0], "job": str(rel.with_suffix("")), "s": float(last["s"]),
                     "cpu_time": float(pd.to_numeric(last.get("cpu_time"), errors="coerce")),
                     "max_rss": float(pd.to_numeric(last.get("max_rss"), errors="coerce")),
                     "start": end - float(last["s"]), "end": end})
    return pd.DataFrame(rows, columns=["rule", "job", "s", "cpu_time", "max_rss", "start", "end"])


def timeline(jobs: pd.DataFrame, cores: int = 2, min_gap: float = 10.0) -> dict:
    """Elapsed time, mean jobs running, and the stretches with fewer than ``cores`` jobs running.

    Returns:
        {"elapsed_s", "mean_running", "underused_s" (time with < cores jobs running),
         "stretches": [{"from_s", "to_s", "running", "jobs"}] (longest first, each >= min_gap)}.
    """
    if jobs.empty:
        return {"elapsed_s": 0.0, "mean_running": 0.0, "underused_s": 0.0, "stretches": []}
    t0 = jobs["start"].min()
    events = sorted({*jobs["start"], *jobs["end"]})
    pieces = []
    for a, b in zip(events[:-1], events[1:]):
        live = jobs[(jobs["start"] < b) & (jobs["end"] > a)]
        pieces.append((a - t0, b - t0, len(live), tuple(live["job"])))
    elapsed = jobs["end"].max() - t0
    busy = sum((b - a) * n for a, b, n, _ in pieces)
    # Merge neighbouring pieces that run the same set of jobs below the core count.
    stretches = []
    for a, b, n, names in pieces:
        if n >= cores:
            continue
        if stretches and stretches[-1]["jobs"] == names and abs(stretches[-1]["to_s"] - a) < 1e-6:
            stretches[-1]["to_s"] = b
        else:
            stretches.append({"from_s": a, "to_s": b, "running": n, "jobs": names})
    underused = sum(s["to_s"] - s["from_s"] for s in stretches)
    long = sorted((s for s in stretches if s["to_s"] - s["from_s"] >= min_gap),
                  key=lambda s: s["from_s"] - s["to_s"])
    return {"elapsed_s": float(elapsed), "mean_running": float(busy / elapsed) if elapsed > 0 else 0.0,
            "underused_s": float(underused), "stretches": long}


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, wall and CPU seconds and peak memory per rule, longest first."""
    table = jobs.groupby("rule").agg(jobs=("job", "size"), wall_s=("s", "sum"), cpu_s=("cpu_time", "sum"),
                                     max_rss_mb=("max_rss", "max"))
    return table.sort_values("wall_s", ascending=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/benchmarks", help="Snakemake benchmark folder")
    parser.add_argument("--top", type=int, default=10, help="rules and jobs to list")
    parser.add_argument("--cores", type=int, default=2, help="cores the run had (for the idle stretches)")
    args = parser.parse_args(argv)
    jobs = collect(args.root)
    if jobs.empty:
        print(f"no benchmark files under {args.root}; run the workflow first", file=sys.stderr)
        return 1
    rules = per_rule(jobs)
    print(f"{len(jobs)} jobs in {len(rules)} rules: {jobs['s'].sum():.1f} s wall (summed over jobs), "
          f"{jobs['cpu_time'].sum():.1f} s CPU, peak {jobs['max_rss'].max():.0f} MB in one job")
    print(f"\nlongest rules (of {len(rules)}):")
    print(rules.head(args.top).round(1).to_string())
    print(f"\nlongest jobs (of {len(jobs)}):")
    print(jobs.sort_values("s", ascending=False).head(args.top).set_index("job")[["s", "cpu_time", "max_rss"]].round(1).to_string())
    line = timeline(jobs, cores=args.cores)
    print(f"\ntimeline (from the benchmark files' times): {line['elapsed_s']:.0f} s elapsed, "
          f"{line['mean_running']:.2f} jobs running on average, {line['underused_s']:.0f} s with fewer than "
          f"{args.cores} jobs running; longest such stretches:")
    for st in line["stretches"][:args.top]:
        # cpu_time / s: the cores a job kept busy (a threads: 2 job alone shows ~2 here)
        load = jobs.set_index("job")["cpu_time"] / jobs.set_index("job")["s"]
        names = ", ".join(f"{j} ({load[j]:.1f} cores)" for j in st["jobs"]) or "nothing (Snakemake between jobs)"
        print(f"  {st['from_s']:7.0f}-{st['to_s']:7.0f} s ({st['to_s'] - st['from_s']:5.0f} s): {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
