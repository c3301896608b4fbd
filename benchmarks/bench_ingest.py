"""Ingest speed: a manifest of N studies (empty image files) through build_cohort.

Prints seconds per 10,000 studies and the ratio to the reference measured in the same
run: pandas reading the same CSV (the floor any ingest pays).  Usage:
    python benchmarks/bench_ingest.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from ctsurv.data.cohort import build_cohort


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        rows = []
        for i in range(n):
            (root / "images" / f"s{i}.nii.gz").touch()
            rows.append({"study_id": f"s{i}", "patient_id": f"p{i // 2}", "image": f"images/s{i}.nii.gz",
                         "report": "text " * 50, "time": 1 + i % 900, "event": int(i % 4 == 0), "age": 40 + i % 50,
                         "sex": "female" if i % 2 else "male", "temp": 98.6})
        pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
        spec = {"adapter": "manifest", "role": "survival", "path": str(root / "m.csv"),
                "clinical": {"age": {"type": "int"}, "sex": {"type": "category", "categories": ["female", "male"]},
                             "temp": {"type": "float"}}}
        t0 = time.perf_counter()
        pd.read_csv(root / "m.csv", dtype=str)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_cohort("bench", spec, {"splits": {"seed": 42, "train": 0.7, "val": 0.1, "test": 0.2}})
        t_ingest = time.perf_counter() - t0
    print(f"studies: {n}")
    print(f"pandas read_csv (reference): {t_ref:.3f} s")
    print(f"build_cohort: {t_ingest:.3f} s ({t_ingest / n * 1e4:.2f} s per 10,000 studies; {t_ingest / t_ref:.1f}x the reference)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
