"""Patient-level splits: ratios, stratification, determinism and stability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.data.splits import assign_splits, source_splits
from ctsurv.errors import ConfigError, DataError


def cohort(n_patients=200, seed=0):
    """About 2 studies per patient; 30 % of patients have an event."""
    rng = np.random.default_rng(seed)
    patients, events = [], []
    for p in range(n_patients):
        had_event = p % 10 < 3
        for k in range(1 + rng.integers(0, 3)):
            patients.append(f"P{p:04d}")
            events.append(int(had_event and k == 0))
    return pd.Series(patients), pd.Series(events, dtype="Int64")


def split(patients, events, seed=42, ratios=(0.7, 0.1, 0.2), stratify=True):
    return assign_splits(patients, events, seed=seed, ratios=ratios, stratify=stratify)


def test_every_patient_in_one_split_in_the_given_ratios_per_stratum():
    patients, events = cohort()
    out = split(patients, events)
    assert out.groupby(patients).nunique().max() == 1
    per_patient = pd.DataFrame({"split": out, "event": events}).groupby(patients.values).agg({"split": "first", "event": "max"})
    counts = per_patient.groupby(["event", "split"]).size()
    # 140 patients without an event and 60 with: 98/14/28 and 42/6/12
    assert counts.loc[0].to_dict() == {"test": 28, "train": 98, "val": 14}
    assert counts.loc[1].to_dict() == {"test": 12, "train": 42, "val": 6}


def test_same_seed_same_splits_other_seed_different():
    patients, events = cohort()
    first = split(patients, events)
    assert split(patients, events).tolist() == first.tolist()
    assert (split(patients, events, seed=43) != first).mean() > 0.2


def test_split_ignores_study_order_and_unrelated_config():
    patients, events = cohort()
    first = dict(zip(patients, split(patients, events)))
    shuffled = np.random.default_rng(1).permutation(len(patients))
    again = split(patients.iloc[shuffled].reset_index(drop=True), events.iloc[shuffled].reset_index(drop=True))
    assert dict(zip(patients.iloc[shuffled], again)) == first


def test_a_patients_split_does_not_change_when_other_config_keys_change(tmp_path):
    """Through build_cohort: editing imaging, survival or the sentence moves nobody."""
    from ctsurv.data.cohort import build_cohort

    rows = [{"study_id": f"s{i}", "patient_id": f"p{i // 2}", "image": f"s{i}.nii.gz", "time": 5 + i, "event": i % 3 == 0}
            for i in range(60)]
    for r in rows:
        (tmp_path / r["image"]).write_bytes(b"x")
        r["event"] = int(r["event"])
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    spec = {"adapter": "manifest", "role": "survival", "path": str(tmp_path / "m.csv"), "clinical": {}}
    config = {"splits": {"seed": 42, "train": 0.7, "val": 0.1, "test": 0.2}, "imaging": {"size": [96, 96, 64]}}
    first = build_cohort("d", spec, config)["split"].tolist()
    changed = {**config, "imaging": {"size": [224, 224, 160]}, "survival": {"lr": 1.0}}
    spec2 = {**spec, "clinical_sentence": "other {x}", "image_root": str(tmp_path)}
    assert build_cohort("d", spec2, changed)["split"].tolist() == first
    assert set(first) == {"train", "val", "test"}


def test_pretrain_is_unstratified_and_ratios_must_add_up():
    patients, events = cohort(100)
    out = split(patients, None, stratify=False)
    assert out.groupby(patients).first().value_counts().to_dict() == {"train": 70, "test": 20, "val": 10}
    with pytest.raises(ConfigError, match="add up to 1"):
        split(patients, events, ratios=(0.7, 0.2, 0.2))


def test_small_strata_still_sum_to_their_size():
    patients = pd.Series(["a", "b", "c"])
    out = split(patients, pd.Series([1, 1, 1]))
    assert out.value_counts().to_dict() == {"train": 2, "test": 1}


def test_source_splits_map_names_and_reject_unknown():
    df = pd.DataFrame({"split": ["train", "valid", "TEST"], "study_id": ["a", "b", "c"], "_source": "x.csv", "_row": [2, 3, 4]})
    assert source_splits(df).tolist() == ["train", "val", "test"]
    df.loc[1, "split"] = "holdout"
    with pytest.raises(DataError, match=r"x.csv, row 3, study 'b', column 'split': split 'holdout'"):
        source_splits(df)
