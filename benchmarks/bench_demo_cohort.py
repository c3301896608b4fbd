"""Time the demo cohort generation (aim: the default 550 studies in under a minute on 2 cores).

Usage: python benchmarks/bench_demo_cohort.py [--scale 1.0] [--workers 2] [--out DIR]

Prints the wall time of each stage (planning, one volume rendered, one volume written,
the whole demo) and ratios against a reference measured in the same run: the time to
write one study's volume with SimpleITK (the floor no generator can go below).  The
machine's load average is printed too: timings on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the render workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default sizes (150/200/200)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    import SimpleITK as sitk

    from ctsurv.demo import generate_demo
    from ctsurv.demo.cohort import plan_dataset
    from ctsurv.demo.nifti import write_volume
    from ctsurv.demo.phantom import render

    sizes = {k: max(1, round(v * args.scale)) for k, v in {"pretrain": 150, "lung": 200, "pe": 200}.items()}
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")

    t0 = time.perf_counter()
    plans = plan_dataset("lung", 40, 0)
    plan_s = (time.perf_counter() - t0) / 40

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    volumes = [render(p.scene, rng) for p in plans[:10]]
    render_s = (time.perf_counter() - t0) / 10
    voxels = float(np.mean([v[0].size for v in volumes]))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i, (p, (hu, labels)) in enumerate(zip(plans, volumes)):
            write_volume(f"{tmp}/v{i}.nii.gz", hu, p.scene.spacing, p.scene.origin, p.orientation)
            write_volume(f"{tmp}/l{i}.nii.gz", labels, p.scene.spacing, p.scene.origin, p.orientation)
        write_s = (time.perf_counter() - t0) / 10
        # Reference: SimpleITK writing the same int16 volume with no re-orientation.
        t0 = time.perf_counter()
        for i, (hu, _) in enumerate(volumes):
            sitk.WriteImage(sitk.GetImageFromArray(hu.transpose(2, 1, 0).copy()), f"{tmp}/r{i}.nii.gz", True)
        ref_s = (time.perf_counter() - t0) / 10

        out = args.out or Path(tmp) / "demo"
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        generate_demo(out, seed=7, n_pretrain=sizes["pretrain"], n_lung=sizes["lung"], n_pe=sizes["pe"], workers=args.workers, progress=False)
        total_s = time.perf_counter() - t0
        cpu_s = _cpu_seconds() - cpu0

    n = sum(sizes.values())
    print(f"studies: {n} ({sizes}); mean voxels per volume: {voxels:,.0f}")
    print(f"plan per study:                {plan_s * 1e3:7.1f} ms")
    print(f"render per study:              {render_s * 1e3:7.1f} ms")
    print(f"write volume + labels:         {write_s * 1e3:7.1f} ms")
    print(f"reference sitk write (volume): {ref_s * 1e3:7.1f} ms")
    print(f"whole demo ({args.workers} workers):       {total_s:7.1f} s  ({total_s / n * 1e3:.0f} ms per study)")
    print(f"whole demo CPU time:           {cpu_s:7.1f} s  (on {args.workers} idle cores: about {cpu_s / args.workers:.0f} s wall)")
    print(f"ratio per-study cost / reference write: {(plan_s + render_s + write_s) / ref_s:.2f}")
    print(f"target: under 60 s for the default sizes -> wall {'met' if total_s / args.scale < 60 else 'NOT met'} "
          f"(extrapolated {total_s / args.scale:.0f} s); CPU/{args.workers} "
          f"{'met' if cpu_s / args.workers / args.scale < 60 else 'NOT met'} ({cpu_s / args.workers / args.scale:.0f} s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
