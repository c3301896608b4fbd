"""CT preprocessing and image encoding split into shards (issue 22, item 1): a study's shard
follows a hash of its id, each shard resumes after a kill, and the merges write the QC table
and the feature store that one job writes, byte for byte (a real Snakemake run with 3 shards
against one with 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from ctsurv.errors import DataError
from ctsurv.features import FeatureStore
from ctsurv.imaging.cache import write_entry
from ctsurv.imaging.encode import encode_cohort, encode_dataset
from ctsurv.imaging.merlin import build_encoder
from ctsurv.imaging.sharded import merge_feature_shards, merge_qc_tables
from ctsurv.imaging.stamps import cache_stamp, volumes_fingerprint
from ctsurv.shards import shard_members, shard_of

IDS = [f"s{i}" for i in range(8)]
ENCODER = {"checkpoint": None, "layers": [1, 1, 1, 1], "width": 4, "seed": 0, "tokens": 49, "batch_size": 2,
           "precision": "fp32", "channels_last": False, "workers": 0, "pretrain": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_study_keeps_its_shard_when_studies_are_added():
    # SHA-256 of the id: the same on every machine and Python (hash() is salted per process).
    assert [shard_of(s, 3) for s in IDS] == [1, 0, 2, 2, 0, 0, 0, 1]
    parts = [shard_members(IDS, i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(IDS) and all(parts)
    assert shard_members(IDS + ["t1", "t2"], 2, 3)[: len(parts[2])] == parts[2]


def test_merge_of_qc_shards_refuses_a_study_twice_or_missing(tmp_path):
    cohort = pd.DataFrame({"study_id": ["a", "b", "c"]})
    pd.DataFrame({"study_id": ["c", "a"], "status": ["ok", "ok"]}).to_parquet(tmp_path / "0.parquet")
    pd.DataFrame({"study_id": ["b"], "status": ["bad"]}).to_parquet(tmp_path / "1.parquet")
    merged = merge_qc_tables([tmp_path / "0.parquet", tmp_path / "1.parquet"], cohort)
    assert merged["study_id"].tolist() == ["a", "b", "c"] and merged["status"].tolist() == ["ok", "bad", "ok"]
    with pytest.raises(DataError, match="study 'c' is in two preprocessing shards"):
        merge_qc_tables([tmp_path / "0.parquet", tmp_path / "0.parquet"], cohort)
    with pytest.raises(DataError, match="study 'b' of the cohort is in no shard"):
        merge_qc_tables([tmp_path / "0.parquet"], cohort)


def fill_cache(cache, n=5, seed=0):
    rng = np.random.default_rng(seed)
    data = {f"s{i}": rng.random((32, 32, 32), dtype=np.float32) for i in range(n)}
    for sid, vol in data.items():
        write_entry(cache, sid, vol, key={"source": sid}, precision="float32")
    pd.DataFrame({"study_id": list(data), "status": "ok"}).to_parquet(cache / "qc.parquet")
    return data


def test_a_study_gets_the_same_features_in_any_batch(tmp_path):
    """A short last batch is padded to the full size, so how studies are grouped into batches
    (by shards, or a resumed run) never changes a bit of the store."""
    fill_cache(tmp_path / "ct")
    enc = build_encoder(None, layers=(1, 1, 1, 1), width=8, seed=0)
    kw = dict(precision="fp32", channels_last=False, device="cpu", batch_size=4)
    one = FeatureStore(encode_cohort([f"s{i}" for i in range(5)], tmp_path / "ct", tmp_path / "one", enc, **kw))
    part = FeatureStore(encode_cohort(["s3", "s1"], tmp_path / "ct", tmp_path / "part", enc, **kw))
    for name in ("pooled", "tokens"):
        assert one.get(["s3", "s1"], name, dtype=np.float16).tobytes() == part.get(["s3", "s1"], name, dtype=np.float16).tobytes()


def test_killed_shard_resumes_and_merge_checks_its_inputs(tmp_path, monkeypatch):
    from ctsurv.imaging import cache as cache_mod

    fill_cache(tmp_path / "ct", n=8)
    qc = tmp_path / "ct" / "qc.parquet"
    dirs = [tmp_path / "shards" / f"{i}-of-3" for i in range(3)]
    assert shard_members(IDS, 0, 3) == ["s1", "s4", "s5", "s6"]
    real = cache_mod.load_preprocessed

    def killed(cache_dir, study_id, mmap=False):
        if study_id == "s6":
            raise KeyboardInterrupt(f"killed while reading {study_id}")
        return real(cache_dir, study_id, mmap)

    for i in (1, 2):
        encode_dataset(qc, dirs[i], ENCODER, shard=(i, 3))
    monkeypatch.setattr(cache_mod, "load_preprocessed", killed)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(qc, dirs[0], ENCODER, shard=(0, 3))
    partial = tmp_path / "shards" / ".0-of-3.partial"
    assert len(list(partial.glob("shard-*.npz"))) == 1 and not (dirs[0] / "index.parquet").exists()
    monkeypatch.setattr(cache_mod, "load_preprocessed", real)
    encode_dataset(qc, dirs[0], ENCODER, shard=(0, 3))  # encodes s5, s6 only
    assert not partial.exists()

    merged = FeatureStore(merge_feature_shards(dirs, qc, tmp_path / "image"))
    single = FeatureStore(encode_dataset(qc, tmp_path / "single", ENCODER))
    assert merged.study_ids == single.study_ids == IDS
    for f in ("pooled.npy", "tokens.npy", "index.parquet", "encoder.json"):
        assert (merged.path / f).read_bytes() == (single.path / f).read_bytes(), f

    with pytest.raises(DataError, match="in no feature shard"):
        merge_feature_shards(dirs[:1], qc, tmp_path / "x")
    write_entry(tmp_path / "ct", "s7", np.zeros((32, 32, 32), np.float32), key={"source": "new"}, precision="float32")
    with pytest.raises(DataError, match="1-of-3: encoded from other preprocessed volumes"):
        merge_feature_shards(dirs, qc, tmp_path / "x")


def tiny_cohort(folder):
    rng = np.random.default_rng(0)
    rows = []
    (folder / "images").mkdir(parents=True)
    for i, sid in enumerate(IDS):
        body = rng.integers(-1000, 1000, size=(12, 20, 20)).astype(np.int16)  # (z, y, x): air and tissue
        image = sitk.GetImageFromArray(body)
        image.SetSpacing((6.0, 6.0, 8.0))
        sitk.WriteImage(image, str(folder / "images" / f"{sid}.nii.gz"))
        rows.append({"study_id": sid, "patient_id": f"p{i}", "image": f"images/{sid}.nii.gz", "report": "r",
                     "time": 10.0 + i, "event": i % 2})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)


def run_workflow(folder, repo, shards, raw):
    folder.mkdir()
    config = {
        "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": str(raw / "manifest.csv"),
                              "clinical": {}, "clinical_sentence": "A patient."}},
        "imaging": {"spacing": [8.0, 8.0, 8.0], "size": [64, 64, 32], "workers": 1, "shards": shards,
                    "qc_sample": 2, "encoder": ENCODER},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "-s", str(repo / "Snakefile"), "--configfile", "config.yaml",
         "--directory", str(folder), "results/tiny/features/image/index.parquet"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"},
    )


def test_snakemake_with_3_shards_writes_the_one_job_files_byte_for_byte(tmp_path, repo):
    tiny_cohort(tmp_path / "raw")  # one source for both runs: the QC table names each image's path
    runs = {n: run_workflow(tmp_path / f"shards{n}", repo, n, tmp_path / "raw") for n in (3, 1)}  # side by side
    for n, proc in runs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-4000:]
    three, one = (tmp_path / f"shards{n}" / "results" for n in (3, 1))
    for i in range(3):  # each shard a job of its own, holding the studies its hash names
        table = pd.read_parquet(three / "tiny" / "ct" / "shards" / f"{i}-of-3.parquet")
        assert table["study_id"].tolist() == shard_members(IDS, i, 3)
        assert (three / "benchmarks" / "encode_images" / f"tiny.{i}.tsv").exists()
        assert FeatureStore(three / "tiny" / "features" / "image_shards" / f"{i}-of-3").study_ids == shard_members(IDS, i, 3)
    assert FeatureStore(three / "tiny" / "features" / "image").study_ids == IDS
    files = ["ct/qc.parquet", "ct/qc_montage.png"] + [f"features/image/{f}" for f in ("index.parquet", "pooled.npy", "tokens.npy")]
    for f in files:
        assert (three / "tiny" / f).read_bytes() == (one / "tiny" / f).read_bytes(), f
    # encoder.json: the same but for the hash of the volume stamps, which include the cache
    # files' mtimes (two one-job runs differ there too); each names its own run's volumes.
    metas = {}
    for results in (three, one):
        meta = json.loads((results / "tiny" / "features" / "image" / "encoder.json").read_text())
        stamps = {s: cache_stamp(results / "tiny" / "ct", s) for s in IDS}
        assert meta.pop("volumes") == volumes_fingerprint(IDS, stamps)
        metas[results] = meta
    assert metas[three] == metas[one] and metas[one]["precision"] == "fp32" and metas[one]["n_tokens"] == 4


KILLER = """
import os, signal, sys
import pandas as pd
from ctsurv.imaging import cache as cache_mod, cohort_cache
from ctsurv.imaging.encode import encode_dataset
from ctsurv.imaging.sharded import preprocess_shard

victim, step, root = sys.argv[1], sys.argv[2], sys.argv[3]
if step == "preprocess":
    real = cohort_cache._process_study
    def process(task):
        if task[0]["study_id"] == victim:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no exception
        return real(task)
    cohort_cache._process_study = process
    preprocess_shard(pd.read_parquet(root + "/cohort.parquet"), root + "/ct", (0, 3), spacing=[8.0, 8.0, 8.0],
                     size=[64, 64, 32], precision="uint16")
else:
    real = cache_mod.load_preprocessed
    def load(cache_dir, study_id, mmap=False):
        if study_id == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(cache_dir, study_id, mmap)
    cache_mod.load_preprocessed = load
    encode_dataset(root + "/ct/qc.parquet", root + "/shard", {ENCODER}, shard=(0, 3))
"""


def test_a_shard_killed_with_sigkill_resumes_where_it_stopped(tmp_path):
    from ctsurv.data.cohort import build_cohort
    from ctsurv.imaging.qc import write_qc_table
    from ctsurv.imaging.sharded import preprocess_shard

    tiny_cohort(tmp_path / "raw")
    spec = {"adapter": "manifest", "role": "pretrain", "path": str(tmp_path / "raw" / "manifest.csv"), "clinical": {}}
    cohort = build_cohort("tiny", spec, {"splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25}})
    cohort.to_parquet(tmp_path / "cohort.parquet")
    script = KILLER.replace("{ENCODER}", repr(ENCODER))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    members = shard_members(IDS, 0, 3)  # s1, s4, s5, s6
    run = subprocess.run([sys.executable, "-c", script, "s5", "preprocess", str(tmp_path)], env=env, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-2000:]
    qc = preprocess_shard(cohort, tmp_path / "ct", (0, 3), spacing=[8.0, 8.0, 8.0], size=[64, 64, 32], precision="uint16")
    assert dict(zip(qc["study_id"], qc["status"])) == {"s1": "cached", "s4": "cached", "s5": "ok", "s6": "ok"}
    write_qc_table(qc, tmp_path / "ct" / "qc.parquet")

    run = subprocess.run([sys.executable, "-c", script, "s5", "encode", str(tmp_path)], env=env, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-2000:]
    partial = tmp_path / ".shard.partial"
    assert len(list(partial.glob("shard-*.npz"))) == 1  # s1, s4: one batch of 2 kept
    store = FeatureStore(encode_dataset(tmp_path / "ct" / "qc.parquet", tmp_path / "shard", ENCODER, shard=(0, 3)))
    assert store.study_ids == members and not partial.exists()
    fresh = FeatureStore(encode_dataset(tmp_path / "ct" / "qc.parquet", tmp_path / "fresh", ENCODER, shard=(0, 3)))
    assert store.array("tokens").tobytes() == fresh.array("tokens").tobytes()
