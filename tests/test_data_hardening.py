"""Data that ingest used to accept silently (issue 12, item 26): each is now a clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.data.cohort import build_cohort, validate_cohort
from ctsurv.errors import DataError

SPLITS = {"seed": 42, "train": 0.5, "val": 0.25, "test": 0.25}


def dataset(tmp_path, n=4, **columns) -> str:
    """An n-study manifest with image files; ``columns`` replace whole columns."""
    df = pd.DataFrame({
        "study_id": [f"s{i}" for i in range(n)],
        "patient_id": [f"p{i}" for i in range(n)],
        "image": [f"img/s{i}.nii.gz" for i in range(n)],
        "time": [str(10 * (i + 1)) for i in range(n)],
        "event": [str(i % 2) for i in range(n)],
        "age": [str(50 + i) for i in range(n)],
    })
    for name, values in columns.items():
        df[name] = values
    (tmp_path / "img").mkdir(exist_ok=True)
    for image in df["image"]:
        (tmp_path / image).write_bytes(b"x")
    df.to_csv(tmp_path / "manifest.csv", index=False)
    return str(tmp_path / "manifest.csv")


def build(path, age=None):
    spec = {"adapter": "manifest", "role": "survival", "path": path, "clinical": {"age": age or {"type": "int"}}}
    return build_cohort("ds", spec, {"splits": SPLITS})


def test_a_clean_dataset_still_builds(tmp_path):
    assert len(build(dataset(tmp_path), age={"type": "int", "min": 0, "max": 120})) == 4


def test_follow_up_of_1e12_days_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"longer than 100 years") as err:
        build(dataset(tmp_path, time=["10", "1e12", "30", "40"]))
    assert "row 3, study 's1', column 'time'" in str(err.value) and "unit" in str(err.value)


@pytest.mark.parametrize("age", ["-40", "250"])
def test_age_outside_the_declared_range_is_an_error(tmp_path, age):
    path = dataset(tmp_path, age=["50", age, "60", "70"])
    with pytest.raises(DataError, match=r"outside the declared range \[0, 120\]") as err:
        build(path, age={"type": "int", "min": 0, "max": 120})
    assert f"row 3, study 's1', column 'age'" in str(err.value) and "min/max" in str(err.value)
    assert len(build(path)) == 4  # without a declared range any number is accepted


def test_zero_rows_is_an_error(tmp_path):
    path = dataset(tmp_path)
    pd.read_csv(path).iloc[:0].to_csv(path, index=False)
    with pytest.raises(DataError, match=r"dataset 'ds': no studies \(0 rows\)"):
        build(path)
    empty = pd.DataFrame({c: pd.Series(dtype="string") for c in ("study_id", "patient_id", "image", "report")})
    with pytest.raises(DataError, match="no studies"):
        validate_cohort(empty.assign(time=np.array([], float), event=pd.Series(dtype="Int64")), check_images=False, source="c.parquet")


def test_one_image_for_two_patients_is_an_error(tmp_path):
    with pytest.raises(DataError, match="an image file that another study also uses") as err:
        build(dataset(tmp_path, image=["img/a.nii.gz", "img/b.nii.gz", "img/a.nii.gz", "img/c.nii.gz"]))
    assert "row 2, study 's0'" in str(err.value) and "row 4, study 's2'" in str(err.value)


@pytest.mark.parametrize("column, ids", [
    ("study_id", ["s0", "S0", "s2", "s3"]),
    ("study_id", ["s0", "s0 ", "s2", "s3"]),
    ("patient_id", ["p0", "P0", "p2", "p3"]),
])
def test_ids_differing_only_in_case_or_spaces_are_an_error(tmp_path, column, ids):
    with pytest.raises(DataError, match=f"a {column} that differs from another only in case or spaces") as err:
        build(dataset(tmp_path, **{column: ids}))
    assert "row 2" in str(err.value) and "row 3" in str(err.value)


@pytest.mark.parametrize("bad", ["../escape", "a/b", "a\\b", "..", "tab\tid"])
def test_study_ids_that_are_not_safe_file_names_are_an_error(tmp_path, bad):
    with pytest.raises(DataError, match="not a safe file name") as err:
        build(dataset(tmp_path, study_id=["s0", bad, "s2", "s3"]))
    assert "row 3" in str(err.value)


def test_a_4d_image_is_not_called_2d(tmp_path):
    import nibabel as nib

    from ctsurv.imaging.io import read_ct

    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.int16) - 1000, np.eye(4)), path)
    with pytest.raises(DataError) as err:
        read_ct(path)
    assert "4D image" in str(err.value) and "2D" not in str(err.value) and "own file" in str(err.value)


def test_the_demo_configs_vital_ranges_catch_celsius(tmp_path, repo):
    from ctsurv.config import load_yaml

    clinical = load_yaml(repo / "config" / "config.yaml")["datasets"]["demo_pe"]["clinical"]
    path = dataset(tmp_path, temperature=["98.6", "37.0", "99.1", "97.9"])
    spec = {"adapter": "manifest", "role": "survival", "path": path, "clinical": {"temperature": clinical["temperature"]}}
    with pytest.raises(DataError, match=r"outside the declared range \[80, 115\]") as err:
        build_cohort("pe", spec, {"splits": SPLITS})
    assert "row 3, study 's1', column 'temperature'" in str(err.value)
