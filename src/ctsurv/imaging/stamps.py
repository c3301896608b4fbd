"""What an image-feature store was made from: its studies and their preprocessed volumes' stamps.

A store's ``encoder.json`` records the encoder fingerprint and :func:`volumes_fingerprint`
of its studies' volume stamps (:func:`ctsurv.imaging.cache.entry_stamp`), so a store (or a
shard of one) made from older volumes is never taken for the current one.  Torch-free: the
merge of feature shards reads these without loading the encoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import DataError

FINGERPRINT_FILE = "encoder.json"


def read_store_meta(store) -> dict:
    """A feature store's ``encoder.json`` (``store``: its folder or a ``FeatureStore``); {} when
    it has none.  The one reader of that file for training, evaluation and the probes."""
    meta = Path(getattr(store, "path", store)) / FINGERPRINT_FILE
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}


def volumes_fingerprint(study_ids: list[str], stamps: dict[str, str]) -> str:
    """One hash of the studies' volume stamps, in store order."""
    return hashlib.sha256(json.dumps([[s, stamps[s]] for s in study_ids]).encode()).hexdigest()


def cache_stamp(cache_dir: Path, study_id: str) -> str:
    """The study's stamp in the preprocessed cache; an error naming it when it is not there."""
    from .cache import entry_stamp

    value = entry_stamp(cache_dir, study_id)
    if value is None:
        raise DataError(
            f"{cache_dir}: study '{study_id}' is not in the preprocessed cache; "
            "run rule preprocess_ct (or it was left out as a bad image: see qc.parquet)"
        )
    return value


def usable_study_ids(qc_table: str | Path) -> list[str]:
    """Studies the preprocessing kept: rows of the QC table whose status is not ``bad``."""
    import pandas as pd

    qc = pd.read_parquet(qc_table, columns=["study_id", "status"])
    return qc.loc[qc["status"] != "bad", "study_id"].astype(str).tolist()
