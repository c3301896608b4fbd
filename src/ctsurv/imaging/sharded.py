"""The imaging steps split across jobs: CT preprocessing and image encoding by shard, and the merges.

Config ``imaging.shards: n`` makes rules ``preprocess_ct`` and ``encode_images`` run as ``n``
jobs each (under SLURM, ``n`` separate jobs).  A study belongs to shard
:func:`ctsurv.shards.shard_of` ``(study_id, n)``, a hash of its id, so it keeps its shard when
studies are added.  Every shard resumes after a kill like the unsharded step: the
preprocessed cache is per study (finished studies are skipped) and the encoder keeps finished
batches in its partial folder (:mod:`ctsurv.imaging.encode`).

The merges give the files the unsharded run gives, byte for byte:

* :func:`merge_qc_tables`: the shards' QC tables in cohort order -> ``ct/qc.parquet``;
* :func:`merge_feature_shards`: the shards' feature stores in the QC table's order -> one
  store (``features/image``); its ``encoder.json`` is the one-job run's too, but for the hash
  of the studies' volume stamps, which carry the cache files' mtimes (two one-job runs
  differ there as well).

Byte-identity of the features needs each study's numbers not to depend on which studies
share its batch: the encoder pads a short last batch to the full batch size (oneDNN picks
kernels by batch size; at full batches a row's result is the same in any position and
company, measured), and every shard must run with the same precision, memory format and
thread count (pin ``imaging.encoder.channels_last`` to true or false: ``auto`` times both
formats in each job and may pick differently).  On a GPU, cuDNN's autotuner makes even two
unsharded runs differ in the last bits.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..errors import DataError
from ..features import FeatureStore, write_features
from ..shards import check_shard, shard_of
from .qc import QC_COLUMNS
from .stamps import FINGERPRINT_FILE, cache_stamp, usable_study_ids, volumes_fingerprint

log = logging.getLogger(__name__)


def preprocess_shard(cohort_df: pd.DataFrame, cache_dir: str | Path, shard: tuple[int, int], **options) -> pd.DataFrame:
    """Preprocess the studies of one shard into the shared cache; their QC table.

    Args:
        cohort_df: the whole cohort table.
        cache_dir: the cache folder (``results/{dataset}/ct``), shared by the shards (one
            file pair per study, so shards never write the same file).
        shard: ``(i, n)``.
        **options: :func:`ctsurv.imaging.cohort_cache.preprocess_cohort`'s settings.

    Returns:
        The QC rows of the shard's studies in cohort order (no rows for an empty shard).
    """
    from .cohort_cache import preprocess_cohort

    i, n = check_shard(*shard)
    mine = cohort_df[[shard_of(str(s), n) == i for s in cohort_df["study_id"]]]
    log.info("shard %d of %d: %d of %d studies", i, n, len(mine), len(cohort_df))
    if mine.empty:
        return pd.DataFrame(columns=QC_COLUMNS)
    return preprocess_cohort(mine, cache_dir, **options)


def merge_qc_tables(paths: Sequence[str | Path], cohort_df: pd.DataFrame) -> pd.DataFrame:
    """The shards' QC tables as one, in cohort order.

    Raises:
        DataError: a study is in two shard tables, in none, or in a table but not the cohort
            (a shard table from another cohort: re-run preprocess_ct).
    """
    frames = [(str(p), pd.read_parquet(p)) for p in paths]
    seen: dict[str, str] = {}
    for path, frame in frames:
        for sid in frame["study_id"].astype(str):
            if sid in seen:
                raise DataError(f"study '{sid}' is in two preprocessing shards ({seen[sid]}, {path}); re-run preprocess_ct")
            seen[sid] = path
    order = cohort_df["study_id"].astype(str).tolist()
    missing = [s for s in order if s not in seen]
    extra = sorted(set(seen) - set(order))
    if missing or extra:
        which = f"study '{missing[0]}' of the cohort is in no shard" if missing else f"study '{extra[0]}' ({seen[extra[0]]}) is not in the cohort"
        raise DataError(f"QC shards {', '.join(p for p, _ in frames)}: {which} ({len(missing)} missing, {len(extra)} extra); "
                        "the shards are from another cohort or shard count: re-run preprocess_ct")
    nonempty = [f for _, f in frames if len(f)]
    table = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=QC_COLUMNS)
    rank = {s: k for k, s in enumerate(order)}
    return table.sort_values("study_id", key=lambda s: s.astype(str).map(rank)).reset_index(drop=True)


def write_empty_store(out_dir: str | Path) -> Path:
    """A shard store without studies (no study hashed to the shard): an index and a marker."""
    out_dir = write_features(out_dir, [], {})
    meta = {"fingerprint": None, "volumes": volumes_fingerprint([], {}), "empty": True}
    atomic_write(out_dir / FINGERPRINT_FILE, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    return out_dir


def merge_feature_shards(shard_dirs: Sequence[str | Path], qc_table: str | Path, out_dir: str | Path) -> Path:
    """Join the shards' feature stores into one store in the QC table's order.

    Each shard must have been encoded by the same encoder at the same precision
    (``encoder.json`` fingerprints) from the volumes now in the cache (its ``volumes`` hash is
    recomputed from the cache's stamps), and together the shards must hold every usable study
    exactly once.  The arrays are copied through memory maps, 1,024 studies at a time, so memory
    stays small however large the cohort.

    Raises:
        DataError: a shard from another encoder or from older volumes, a study twice or missing.
    """
    out_dir = Path(out_dir)
    ids = usable_study_ids(qc_table)
    if not ids:
        raise DataError(f"{qc_table}: no usable study to merge (every image is bad)")
    cache_dir = Path(qc_table).parent
    stamps = {s: cache_stamp(cache_dir, s) for s in ids}
    row = {s: k for k, s in enumerate(ids)}
    shards = []
    for d in map(Path, shard_dirs):
        try:
            meta = json.loads((d / FINGERPRINT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"{d}: not a finished image-feature shard ({err}); re-run encode_images") from None
        store = FeatureStore(d)
        unknown = [s for s in store.study_ids if s not in row]
        if unknown:
            raise DataError(f"{d}: study '{unknown[0]}' is not a usable study of {qc_table}; re-run encode_images")
        if meta["volumes"] != volumes_fingerprint(store.study_ids, stamps):
            raise DataError(f"{d}: encoded from other preprocessed volumes than those now in {cache_dir}; re-run encode_images")
        shards.append((d, meta, store))
    full = [(d, meta) for d, meta, store in shards if not meta.get("empty")]
    prints = {meta["fingerprint"] for _, meta in full}
    if len(prints) > 1:
        raise DataError(f"feature shards {', '.join(str(d) for d, _ in full)} were made by different encoders or precisions; "
                        "re-run encode_images for every shard")
    where: dict[str, Path] = {}
    for d, _, store in shards:
        for s in store.study_ids:
            if s in where:
                raise DataError(f"study '{s}' is in two feature shards ({where[s]}, {d}); re-run encode_images")
            where[s] = d
    missing = [s for s in ids if s not in where]
    if missing:
        raise DataError(f"{len(missing)} usable studies of {qc_table} are in no feature shard, e.g. '{missing[0]}'; "
                        "the shards are from another shard count: re-run encode_images")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.merge.", dir=out_dir.parent))
    try:
        arrays: dict[str, np.ndarray] = {}
        for d, meta, store in shards:
            if meta.get("empty"):
                continue
            rows = np.fromiter((row[s] for s in store.study_ids), dtype=np.int64, count=len(store))
            for name in store.names():
                values = store.array(name)
                if name not in arrays:
                    arrays[name] = np.lib.format.open_memmap(work / f"{name}.npy", mode="w+", dtype=np.float16,
                                                             shape=(len(ids), *values.shape[1:]))
                for a in range(0, len(rows), 1024):  # bounded memory: 1,024 studies at a time
                    arrays[name][rows[a:a + 1024]] = values[a:a + 1024]
        write_features(out_dir, ids, arrays)
        del arrays  # close the memory maps before their folder goes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = dict(full[0][1])
    meta["volumes"] = volumes_fingerprint(ids, stamps)
    atomic_write(out_dir / FINGERPRINT_FILE, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
    log.info("merged %d feature shards into %s: %d studies", len(shards), out_dir, len(ids))
    return out_dir
