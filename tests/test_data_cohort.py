"""Cohort typing, validation errors (one test each) and the Parquet round trip."""

from __future__ import annotations

import pandas as pd
import pytest

from ctsurv.data.adapters.manifest import read_manifest
from ctsurv.data.cohort import build_cohort, read_cohort, standardize, validate_cohort, write_cohort
from ctsurv.errors import DataError

CLINICAL = {
    "age": {"type": "int"},
    "temp": {"type": "float"},
    "sex": {"type": "category", "categories": ["female", "male"]},
    "acute": {"type": "bool"},
    "note": {"type": "string"},
}
SPLITS = {"seed": 42, "train": 0.5, "val": 0.25, "test": 0.25}


def write_dataset(tmp_path, rows=None, *, images=True, **changes):
    """A 4-study manifest (3 patients) with image files; ``changes`` edit columns by row."""
    base = {
        "study_id": ["s1", "s2", "s3", "s4"],
        "patient_id": ["p1", "p1", "p2", "p3"],
        "image": ["images/s1.nii.gz", "images/s2.nrrd", "images/s3.mha", "images/s4.nii.gz"],
        "report": ["r1", "r2", "r3", "r4"],
        "time": ["10", "20.5", "30", "40"],
        "event": ["1", "0", "1", "0"],
        "age": ["64", "64", "70", ""],
        "temp": ["98.6", "99.1", "", "97"],
        "sex": ["male", "male", "female", "female"],
        "acute": ["true", "yes", "0", "FALSE"],
        "note": ["a", "b", "", "d"],
    }
    for column, edits in changes.items():
        for i, value in edits.items():
            base[column][i] = value
    df = pd.DataFrame(rows or base)
    (tmp_path / "images").mkdir(exist_ok=True)
    if images:
        for path in df["image"]:
            if "." in path:  # folders (DICOM series) are made by the test itself
                (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / path).write_bytes(b"x")
    df.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def spec_for(path, **extra):
    return {"adapter": "manifest", "role": "survival", "path": str(path), "clinical": CLINICAL, **extra}


def build(path, **extra):
    return build_cohort("ds", spec_for(path, **extra), {"splits": SPLITS})


def test_clinical_columns_are_typed_as_declared(tmp_path):
    cohort = build(write_dataset(tmp_path))
    assert cohort["age"].dtype == "Int64" and cohort["age"].tolist()[:3] == [64, 64, 70]
    assert cohort["age"].isna().tolist() == [False, False, False, True]
    assert cohort["temp"].dtype == "float64" and cohort["temp"].iloc[0] == pytest.approx(98.6)
    assert list(cohort["sex"].cat.categories) == ["female", "male"]
    assert cohort["acute"].tolist() == [True, True, False, False]
    assert pd.isna(cohort["note"].iloc[2])
    assert cohort["time"].tolist() == [10.0, 20.5, 30.0, 40.0]
    assert cohort["event"].dtype == "Int64" and cohort["event"].tolist() == [1, 0, 1, 0]
    assert cohort["image"].iloc[0] == str((tmp_path / "images" / "s1.nii.gz").absolute())


def test_write_and_read_keep_types_and_drop_bookkeeping(tmp_path):
    spec = spec_for(write_dataset(tmp_path))
    cohort = build_cohort("ds", spec, {"splits": SPLITS})
    write_cohort(cohort, tmp_path / "out" / "cohort.parquet", spec)
    back = read_cohort(tmp_path / "out" / "cohort.parquet")
    assert list(back.columns) == ["study_id", "patient_id", "split", "image", "report", "time", "event", *CLINICAL]
    assert str(back["event"].dtype) == "Int64" and back["time"].dtype == "float64"
    assert str(back["study_id"].dtype) == "string" and back["acute"].dtype == "boolean"
    assert list(back["sex"].cat.categories) == ["female", "male"]
    assert back["split"].tolist() == cohort["split"].tolist()
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "out" / "cohort.parquet")
    assert str(schema.field("event").type) == "int64" and str(schema.field("time").type) == "double"


def test_error_duplicate_study_ids(tmp_path):
    with pytest.raises(DataError, match=r"duplicate study_id") as err:
        build(write_dataset(tmp_path, study_id={3: "s1"}))
    assert "manifest.csv, row 2, study 's1'" in str(err.value) and "row 5" in str(err.value)


def test_error_patient_in_two_splits_with_source_splits(tmp_path):
    path = write_dataset(tmp_path)
    df = pd.read_csv(path, dtype=str)
    df["split"] = ["train", "test", "val", "train"]
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"patient 'p1' in \['test', 'train'\]") as err:
        build(path, use_source_splits=True)
    assert "row 2" in str(err.value) and "use_source_splits: false" in str(err.value)


def test_error_missing_image_files(tmp_path):
    path = write_dataset(tmp_path)
    (tmp_path / "images" / "s3.mha").unlink()
    with pytest.raises(DataError, match=r"1 missing image file") as err:
        build(path)
    assert "row 4, study 's3', column 'image'" in str(err.value) and "s3.mha does not exist" in str(err.value)


def test_error_empty_dicom_folder_and_accepts_a_full_one(tmp_path):
    path = write_dataset(tmp_path, image={0: "dicom/s1"})
    (tmp_path / "dicom" / "s1").mkdir(parents=True)
    with pytest.raises(DataError, match="empty folder"):
        build(path)
    (tmp_path / "dicom" / "s1" / "IM0001.dcm").write_bytes(b"x")
    assert build(path)["image"].iloc[0].endswith("dicom/s1")


def test_error_non_positive_times(tmp_path):
    with pytest.raises(DataError, match="time that is not positive") as err:
        build(write_dataset(tmp_path, time={1: "0", 2: "-3"}))
    assert "row 3" in str(err.value) and "row 4" in str(err.value) and "2 row(s)" in str(err.value)


def test_error_events_other_than_0_1(tmp_path):
    with pytest.raises(DataError, match=r"event must be 0 or 1, got '2'") as err:
        build(write_dataset(tmp_path, event={2: "2"}))
    assert "manifest.csv, row 4, study 's3', column 'event'" in str(err.value)
    frame = pd.DataFrame({"study_id": ["a"], "patient_id": ["p"], "image": ["x"], "report": ["r"], "time": [1.0], "event": [3]})
    with pytest.raises(DataError, match="event other than 0/1"):
        validate_cohort(frame, check_images=False, source="cohort.parquet")


def test_error_missing_reports_when_required(tmp_path):
    cohort = build(write_dataset(tmp_path, report={1: ""}))
    validate_cohort(cohort)  # reports are optional for ingest itself
    with pytest.raises(DataError, match="missing report") as err:
        validate_cohort(cohort, require_reports=True)
    assert "row 3, study 's2', column 'report'" in str(err.value)


def test_error_declared_clinical_column_absent(tmp_path):
    path = write_dataset(tmp_path)
    spec = spec_for(path)
    spec["clinical"] = {**CLINICAL, "stage": {"type": "category", "categories": ["1", "2"]}, "bmi": {"type": "float"}}
    with pytest.raises(DataError, match=r"declared clinical column\(s\) \['stage', 'bmi'\] not found") as err:
        build_cohort("ds", spec, {"splits": SPLITS})
    assert "manifest.csv" in str(err.value)


def test_error_unparseable_values_name_file_row_column_value(tmp_path):
    with pytest.raises(DataError, match=r"row 3, study 's2', column 'age': not a number: 'sixty'"):
        build(write_dataset(tmp_path, age={1: "sixty"}))
    with pytest.raises(DataError, match=r"row 2, study 's1', column 'age': not a whole number: '64.5'"):
        build(write_dataset(tmp_path, age={0: "64.5"}))
    with pytest.raises(DataError, match=r"column 'time': not a number: '12 days'"):
        build(write_dataset(tmp_path, time={0: "12 days"}))
    with pytest.raises(DataError, match=r"column 'acute': not a yes/no value: 'maybe'"):
        build(write_dataset(tmp_path, acute={3: "maybe"}))


def test_error_category_outside_declared_lists_allowed(tmp_path):
    with pytest.raises(DataError, match=r"row 5, study 's4', column 'sex': not an allowed category: 'F'(?s:.)*\['female', 'male'\]"):
        build(write_dataset(tmp_path, sex={3: "F"}))


def test_survival_rows_need_follow_up(tmp_path):
    with pytest.raises(DataError, match=r"no follow-up") as err:
        build(write_dataset(tmp_path, event={0: ""}))
    assert "row 2" in str(err.value)


def test_pretrain_dataset_needs_no_time_columns(tmp_path):
    rows = {"study_id": ["a", "b"], "patient_id": ["p", "q"], "image": ["a.nii", "b.nii"], "report": ["x", None]}
    path = write_dataset(tmp_path, rows=rows)
    spec = {"adapter": "manifest", "role": "pretrain", "path": str(path)}
    cohort = build_cohort("pre", spec, {"splits": SPLITS})
    assert cohort["time"].isna().all() and cohort["event"].isna().all()
    assert standardize(read_manifest(path), spec)["report"].isna().tolist() == [False, True]
