"""Where the demo's time goes: per-rule sums of Snakemake's benchmark files.

    python benchmarks/demo_times.py [--root results/benchmarks] [--top 10]

Every rule writes ``results/benchmarks/{rule}/....tsv`` (columns ``s``, ``cpu_time``,
``max_rss``, ...).  Prints the total wall and CPU seconds of all jobs (the sum, not the
elapsed time of a parallel run), the rules ordered by wall time, and the longest single jobs.
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
        rows.append({"rule": rel.parts[0], "job": str(rel.with_suffix("")), "s": float(last["s"]),
                     "cpu_time": float(pd.to_numeric(last.get("cpu_time"), errors="coerce")),
                     "max_rss": float(pd.to_numeric(last.get("max_rss"), errors="coerce"))})
    return pd.DataFrame(rows, columns=["rule", "job", "s", "cpu_time", "max_rss"])


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, wall and CPU seconds and peak memory per rule, longest first."""
    table = jobs.groupby("rule").agg(jobs=("job", "size"), wall_s=("s", "sum"), cpu_s=("cpu_time", "sum"),
                                     max_rss_mb=("max_rss", "max"))
    return table.sort_values("wall_s", ascending=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/benchmarks", help="Snakemake benchmark folder")
    parser.add_argument("--top", type=int, default=10, help="rules and jobs to list")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
