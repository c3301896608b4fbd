"""On-disk feature stores: float16 arrays addressable by study id, memory-mapped on read.

A store is a directory::

    index.parquet      one row per study, column ``study_id``, in array order
    <name>.npy         one array per feature kind, first axis = studies (float16)

Image features use ``pooled`` (N, 2048) and ``tokens`` (N, T, 2048); text features use
``pooled`` (N, D).  Stores are written to a temporary directory and renamed into place, so
a reader never sees a half-written store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_folder
from .errors import DataError


def write_features(path: str | Path, study_ids: Sequence[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (first axis aligned with ``study_ids``) as a store at ``path``."""
    path = Path(path)
    ids = [str(s) for s in study_ids]
    if len(set(ids)) != len(ids):
        raise DataError(f"feature store {path}: duplicate study ids")
    for name, arr in arrays.items():
        if arr.shape[0] != len(ids):
            raise DataError(f"feature store {path}: '{name}' has {arr.shape[0]} rows for {len(ids)} studies")
    with atomic_folder(path) as tmp:
        pd.DataFrame({"study_id": ids}).to_parquet(tmp / "index.parquet", index=False)
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.asarray(arr, dtype=np.float16))
    return path


class FeatureStore:
    """Read-only view of a store; arrays are memory-mapped, rows looked up by study id."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = self.path / "index.parquet"
        if not index.exists():
            raise DataError(f"{self.path} is not a feature store (no index.parquet); run the encoding step first")
        self.study_ids: list[str] = pd.read_parquet(index)["study_id"].astype(str).tolist()
        self._row = {s: i for i, s in enumerate(self.study_ids)}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.npy"))

    def array(self, name: str = "pooled") -> np.ndarray:
        file = self.path / f"{name}.npy"
        if not file.exists():
            raise DataError(f"feature store {self.path} has no '{name}' features (has: {', '.join(self.names())})")
        return np.load(file, mmap_mode="r")

    def get(self, study_ids: Sequence[str], name: str = "pooled", dtype=np.float32) -> np.ndarray:
        """Rows for ``study_ids`` in that order; a missing study is an error naming it."""
        missing = [s for s in study_ids if s not in self._row]
        if missing:
            raise DataError(
                f"feature store {self.path} has no features for {len(missing)} studies, e.g. '{missing[0]}'; "
                "re-run the encoding step (or check on_bad_image: skip in the QC table)"
            )
        arr = self.array(name)
        rows = np.fromiter((self._row[s] for s in study_ids), dtype=np.int64, count=len(study_ids))
        return np.asarray(arr[rows], dtype=dtype)

    def check_finite(self, study_ids: Sequence[str], name: str = "tokens", chunk_rows: int = 256) -> None:
        """Refuse NaN or infinite features of ``study_ids`` (read in chunks of rows from the
        memory map): a single NaN token trains a model whose weights are all NaN.

        Raises:
            DataError: naming the store, the studies and each one's count of bad values.
        """
        ids = list(dict.fromkeys(study_ids))
        rows = np.fromiter((self._row[s] for s in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(rows, kind="stable")  # sequential reads of the memory map
        bad: dict[str, int] = {}
        for start in range(0, len(order), chunk_rows):
            part = order[start:start + chunk_rows]
            # a fresh map per chunk: the pages a map has touched count as resident until it is
            # closed, so one map over the loop would hold the whole store (4 GB for INSPECT)
            block = np.asarray(self.array(name)[rows[part]])
            counts = (~np.isfinite(block)).reshape(len(part), -1).sum(axis=1)
            for i in np.flatnonzero(counts):
                bad[ids[part[i]]] = int(counts[i])
        if bad:
            shown = ", ".join(f"study '{s}' ({n} values)" for s, n in list(bad.items())[:5])
            more = f" and {len(bad) - 5} more studies" if len(bad) > 5 else ""
            raise DataError(f"feature store {self.path}: '{name}' holds NaN or infinite values: {shown}{more}; "
                            "re-encode those studies (delete the store and rerun encode_images) or check their images")

    def __contains__(self, study_id: str) -> bool:
        return study_id in self._row

    def __len__(self) -> int:
        return len(self.study_ids)
