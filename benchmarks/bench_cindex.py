"""Bootstrap Harrell c-index at INSPECT scale: time and peak memory per test-set size.

Runs :func:`ctsurv.survival.metrics.harrell_cindex` (1,000 resamples by default) on a
synthetic test split of 2,000, 20,000 and 100,000 patients (ties in time, 60 % events) and
prints wall and CPU seconds and the peak of numpy's allocations (tracemalloc).  The dense
pair-matrix version it replaced needed several n x n float64 arrays: 3.2 GB each at 20,000
patients, 80 GB each at 100,000.  ``--dense-check N`` also runs that version at N patients
and prints the largest difference of the interval (it must be 0 up to rounding).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cindex.py [--sizes 2000 20000 100000]``.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from ctsurv.survival.metrics import TIED_TOL, harrell_cindex


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.ceil(rng.exponential(np.exp(-x)) * 365)  # whole days: ties
    e = rng.random(n) < 0.6
    return t, e, x + rng.normal(scale=1.0, size=n)


def dense_interval(t, e, r, n_boot, seed):
    """The replaced implementation (n x n pair matrices), for --dense-check only."""
    comparable = e[:, None] & ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :]))
    diff = r[:, None] - r[None, :]
    score = comparable * np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float))
    w = np.random.default_rng(seed).multinomial(len(t), np.full(len(t), 1.0 / len(t)), size=n_boot).astype(float)
    boots = ((w @ score) * w).sum(1) / ((w @ comparable.astype(float)) * w).sum(1)
    return np.quantile(boots[np.isfinite(boots)], [0.025, 0.975])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--dense-check", type=int, default=0, metavar="N")
    args = parser.parse_args()
    print(f"{'patients':>9} {'n_boot':>6} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}  c-index [95% CI]")
    for n in args.sizes:
        t, e, r = synthetic(n)
        tracemalloc.start()
        wall, cpu = time.perf_counter(), time.process_time()
        got = harrell_cindex(t, e, r, n_boot=args.n_boot, seed=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{n:>9} {args.n_boot:>6} {wall:>8.2f} {cpu:>8.2f} {peak / 2**20:>9.1f}  "
              f"{got.cindex:.4f} [{got.lower:.4f}, {got.upper:.4f}]", flush=True)
    print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.dense_check:
        t, e, r = synthetic(args.dense_check, seed=1)
        got = harrell_cindex(t, e, r, n_boot=args.n_boot, seed=0)
        lo, hi = dense_interval(t, e, r, args.n_boot, 0)
        print(f"dense check at {args.dense_check}: |d lower| {abs(got.lower - lo):.2e}, |d upper| {abs(got.upper - hi):.2e}")


if __name__ == "__main__":
    main()
