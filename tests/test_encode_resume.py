"""A resumed or repeated encoding never mixes features of old and new volumes or precisions
(issue 12, item 3): the fingerprint covers the preprocessed volumes and the precision."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from ctsurv.features import FeatureStore
from ctsurv.imaging import cache as cache_mod
from ctsurv.imaging import encode as encode_mod
from ctsurv.imaging.cache import write_entry
from ctsurv.imaging.encode import encode_cohort
from ctsurv.imaging.merlin import build_encoder

SHAPE = (32, 32, 32)
encode = functools.partial(encode_cohort, precision="fp32", channels_last=False, device="cpu", batch_size=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def volumes(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"s{i:02d}": rng.random(SHAPE, dtype=np.float32) for i in range(n)}


def fill_cache(cache, data, settings):
    for sid, vol in data.items():
        write_entry(cache, sid, vol, key={"source": sid, "spacing": settings}, precision="float32")


def model():
    return build_encoder(None, layers=(1, 1, 1, 1), width=8, seed=0)


def pooled_of(data, ids):
    batch = torch.from_numpy(np.stack([data[s] for s in ids]))[:, None]
    with torch.inference_mode():
        return model().encode(batch, "inplane")[0].numpy()


def killed_at(monkeypatch, study):
    real = cache_mod.load_preprocessed

    def load(cache_dir, study_id, mmap=False):
        if study_id == study:
            raise KeyboardInterrupt(f"killed while reading {study_id}")
        return real(cache_dir, study_id, mmap)

    monkeypatch.setattr(cache_mod, "load_preprocessed", load)


def test_resume_after_new_imaging_settings_reencodes_the_changed_volumes(tmp_path, monkeypatch):
    ids = ["s00", "s01", "s02", "s03"]
    old, new = volumes(4, seed=1), volumes(4, seed=2)
    fill_cache(tmp_path / "ct", old, [4, 4, 6])
    with monkeypatch.context() as m:
        killed_at(m, "s02")
        with pytest.raises(KeyboardInterrupt):
            encode(ids, tmp_path / "ct", tmp_path / "image", model())
    fill_cache(tmp_path / "ct", new, [3, 3, 5])  # the preprocessing re-ran with other settings
    out = encode(ids, tmp_path / "ct", tmp_path / "image", model())
    np.testing.assert_allclose(FeatureStore(out).get(ids, "pooled"), pooled_of(new, ids), rtol=2e-3, atol=1e-4)


def test_finished_store_is_redone_for_changed_volumes(tmp_path):
    ids = ["s00", "s01"]
    old, new = volumes(2, seed=1), volumes(2, seed=2)
    fill_cache(tmp_path / "ct", old, [4, 4, 6])
    encode(ids, tmp_path / "ct", tmp_path / "image", model())
    fill_cache(tmp_path / "ct", {"s01": new["s01"]}, [3, 3, 5])
    out = encode(ids, tmp_path / "ct", tmp_path / "image", model())
    want = pooled_of({"s00": old["s00"], "s01": new["s01"]}, ids)
    np.testing.assert_allclose(FeatureStore(out).get(ids, "pooled"), want, rtol=2e-3, atol=1e-4)


class CountingLoader:
    def __init__(self, data, fail_on=None):
        self.data, self.fail_on, self.calls = data, fail_on, []

    def __call__(self, study_id):
        if study_id == self.fail_on:
            raise KeyboardInterrupt(study_id)
        self.calls.append(study_id)
        return self.data[study_id]


def test_partial_shards_of_another_precision_are_discarded(tmp_path, monkeypatch):
    monkeypatch.setattr(encode_mod, "cpu_has_bf16", lambda: False)
    data = volumes(4, seed=1)
    ids = list(data)
    with pytest.raises(KeyboardInterrupt):
        encode(ids, None, tmp_path / "image", model(), loader=CountingLoader(data, fail_on="s02"))
    loader = CountingLoader(data)
    encode(ids, None, tmp_path / "image", model(), precision="bf16", loader=loader)
    assert loader.calls == ids  # nothing of the fp32 run is reused
    # "auto" resolves to fp32 here: the bf16 store is not taken as up to date for it
    loader = CountingLoader(data)
    encode(ids, None, tmp_path / "image", model(), precision="auto", loader=loader)
    assert loader.calls == ids
    loader = CountingLoader(data)
    encode(ids, None, tmp_path / "image", model(), precision="fp32", loader=loader)
    assert loader.calls == []  # same resolved precision, same volumes: up to date
