"""Patient-level train/val/test splits: seeded, stratified by event, stable.

A patient's split depends only on ``splits.seed``, the ratios, the set of patients of the
dataset and whether each patient had an event: nothing else in the config can move a
patient.  The order within a stratum comes from a keyed hash of (seed, patient id) rather
than from a generator's stream, so it is the same on every platform and library version.
"""

from __future__ import annotations

import hashlib
import math

import pandas as pd

from ..errors import ConfigError, DataError
from .tables import locate

SPLIT_NAMES = ("train", "val", "test")
#: Names that public datasets use for our splits.
_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
            "dev": "val", "test": "test", "testing": "test"}


def _key(seed: int, patient: str) -> str:
    return hashlib.sha256(f"{seed}\x00{patient}".encode("utf-8")).hexdigest()


def _counts(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder rounding of ``n * ratios`` (sums to n; ties go to the earlier split)."""
    raw = [n * r for r in ratios]
    counts = [math.floor(x) for x in raw]
    order = sorted(range(3), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    return counts


def assign_splits(
    patient_ids: pd.Series,
    events: pd.Series | None,
    *,
    seed: int,
    ratios: tuple[float, float, float],
    stratify: bool = True,
) -> pd.Series:
    """Assign each study the split of its patient.

    Patients are grouped into strata (any event vs none when ``stratify``; one stratum
    otherwise), ordered within a stratum by a hash of (seed, patient id), and the first
    ``round(n * train)`` go to train, the next ``round(n * val)`` to val, the rest to test
    (largest-remainder rounding, so every stratum is split in the given ratios).

    Args:
        patient_ids: patient of each study, shape (N,).
        events: event of each study (0/1/null), shape (N,); ignored unless ``stratify``.
        seed: ``splits.seed``.
        ratios: (train, val, test) fractions adding up to 1.
        stratify: stratify by event (survival datasets).

    Returns:
        Series of split names aligned with ``patient_ids``.
    """
    ratios = tuple(float(r) for r in ratios)
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(f"keys 'splits.train/val/test' must be >= 0 and add up to 1, got {ratios}")
    patients = patient_ids.astype(str)
    if stratify and events is not None:
        has_event = (pd.to_numeric(events, errors="coerce").fillna(0) == 1).groupby(patients.values).any()
    else:
        has_event = pd.Series(False, index=sorted(set(patients)))
    split_of: dict[str, str] = {}
    for stratum in (False, True):
        members = sorted(p for p, e in has_event.items() if bool(e) == stratum)
        members.sort(key=lambda p: _key(seed, p))
        counts = _counts(len(members), ratios)
        start = 0
        for name, count in zip(SPLIT_NAMES, counts):
            for p in members[start : start + count]:
                split_of[p] = name
            start += count
    return pd.Series([split_of[p] for p in patients], index=patient_ids.index, dtype="string")


def source_splits(df: pd.DataFrame) -> pd.Series:
    """The dataset's own split column, with names mapped to train/val/test.

    Raises:
        DataError: the adapter gave no split, a row has none, or a name is unknown.
    """
    if "split" not in df.columns or df["split"].isna().all():
        raise DataError("use_source_splits is true but this dataset has no split column; set use_source_splits: false or add a 'split' column")
    out = []
    for i, value in enumerate(df["split"].tolist()):
        name = _ALIASES.get(str(value).strip().lower()) if not pd.isna(value) else None
        if name is None:
            raise DataError(f"{locate(df, i, 'split')}: split {value!r} is not one of train/val(valid)/test; fix the value or set use_source_splits: false")
        out.append(name)
    return pd.Series(out, index=df.index, dtype="string")
