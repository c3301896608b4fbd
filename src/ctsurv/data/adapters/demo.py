"""Adapter ``demo``: the synthetic cohorts written by rule ``demo_cohort``.

Reads ``{path}/manifest.csv`` with the manifest adapter (images relative to ``{path}``)
and checks that ``gold_answers.parquet`` and ``truth.parquet`` are beside it, since the
evaluation of the demo compares against them.  Key read: ``path``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import ConfigError, DataError
from .manifest import read_manifest

COMPANIONS = ("gold_answers.parquet", "truth.parquet")


def load(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Adapter entry point: ``{path}/manifest.csv`` plus the companion files' existence."""
    if not spec.get("path"):
        raise ConfigError(f"key 'datasets.{name}.path' is missing: the demo adapter needs the demo folder")
    folder = Path(spec["path"])
    missing = [f for f in COMPANIONS if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: demo file(s) {missing} not found; run `ctsurv demo-cohort` (rule demo_cohort) to write them")
    return read_manifest(
        folder / "manifest.csv",
        image_root=folder,
        clinical=spec.get("clinical"),
        survival=spec.get("role") == "survival",
    )
