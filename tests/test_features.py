"""Feature stores: float16 on disk, rows by study id, atomic replacement, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.errors import DataError
from ctsurv.features import FeatureStore, write_features


def test_roundtrip_by_study_id(tmp_path):
    rng = np.random.default_rng(0)
    pooled = rng.normal(size=(3, 8)).astype(np.float32)
    tokens = rng.normal(size=(3, 4, 8)).astype(np.float32)
    write_features(tmp_path / "f", ["a", "b", "c"], {"pooled": pooled, "tokens": tokens})
    store = FeatureStore(tmp_path / "f")
    assert len(store) == 3 and "b" in store and store.names() == ["pooled", "tokens"]
    assert store.array("pooled").dtype == np.float16
    got = store.get(["c", "a"])
    np.testing.assert_allclose(got, pooled[[2, 0]], atol=2e-3)
    assert store.get(["b"], "tokens").shape == (1, 4, 8)


def test_rewrite_replaces_whole_store(tmp_path):
    write_features(tmp_path / "f", ["a", "b"], {"pooled": np.zeros((2, 2)), "tokens": np.zeros((2, 1, 2))})
    write_features(tmp_path / "f", ["z"], {"pooled": np.ones((1, 2))})
    store = FeatureStore(tmp_path / "f")
    assert store.study_ids == ["z"] and store.names() == ["pooled"]
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary folders left


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="duplicate study ids"):
        write_features(tmp_path / "f", ["a", "a"], {"pooled": np.zeros((2, 2))})
    with pytest.raises(DataError, match="'pooled' has 1 rows for 2 studies"):
        write_features(tmp_path / "f", ["a", "b"], {"pooled": np.zeros((1, 2))})
    with pytest.raises(DataError, match="not a feature store"):
        FeatureStore(tmp_path / "nothing")
    write_features(tmp_path / "f", ["a"], {"pooled": np.zeros((1, 2))})
    with pytest.raises(DataError, match="no features for 1 studies, e.g. 'q'"):
        FeatureStore(tmp_path / "f").get(["a", "q"])
    with pytest.raises(DataError, match="has no 'tokens' features"):
        FeatureStore(tmp_path / "f").get(["a"], "tokens")
