"""Dataset adapters: raw data of one kind -> an adapter frame with the cohort's columns.

Each adapter module has ``load(name, spec, config) -> DataFrame`` returning contract
column names (see :mod:`ctsurv.data.cohort`), absolute image paths, the declared clinical
columns (still untyped) and the ``_source``/``_row`` bookkeeping columns.  Typing, splits
and validation are shared (:func:`ctsurv.data.cohort.build_cohort`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import ConfigError
from . import ct_rate, demo, manifest
from . import inspect as inspect_release

ADAPTERS = {
    "demo": demo.load,
    "manifest": manifest.load,
    "ct_rate": ct_rate.load,
    "inspect": inspect_release.load,
}


def load_dataset(name: str, spec: dict, config: dict) -> pd.DataFrame:
    """Run the adapter named by ``spec['adapter']`` for dataset ``name``."""
    adapter = spec.get("adapter")
    if adapter not in ADAPTERS:
        raise ConfigError(f"key 'datasets.{name}.adapter': expected one of {sorted(ADAPTERS)}, got {adapter!r}")
    return ADAPTERS[adapter](name, spec, config)


def input_files(spec: dict) -> list[str]:
    """The tables an adapter reads (not the images): the rule ``ingest``'s inputs.

    A change to one of them re-runs ``ingest``; image files are checked, not tracked.
    """
    adapter = spec.get("adapter")
    if adapter == "demo":
        return [str(Path(spec["path"]) / "manifest.csv")]
    if adapter == "manifest":
        return [str(spec["path"])]
    if adapter == "ct_rate":
        return [p for key in ("reports", "metadata") for p in ct_rate.table_files(spec, key)] + ct_rate.exclude_files(spec)
    if adapter == "inspect":
        root = Path(spec["path"])
        files = {**inspect_release.DEFAULT_FILES, **(spec.get("files") or {})}
        names = ["study_mapping", "impressions", "labels"] + (["splits"] if spec.get("use_source_splits") else [])
        out = [str(root / files[n]) for n in names]
        return out + ([str(spec["ehr"])] if spec.get("ehr") else [])
    return []


__all__ = ["ADAPTERS", "input_files", "load_dataset"]
