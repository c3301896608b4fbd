"""Every adapter on small fixtures written by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ctsurv.data.adapters import input_files, load_dataset
from ctsurv.data.adapters.inspect import infer_time_unit
from ctsurv.data.cohort import build_cohort
from ctsurv.errors import ConfigError, DataError

SPLITS = {"splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25}}


def volume(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.full((3, 4, 5), value, dtype=np.int16))
    sitk.WriteImage(image, str(path))


# ---------------------------------------------------------------- manifest and demo


def test_manifest_parquet_with_column_mapping_image_root_and_all_formats(tmp_path):
    root = tmp_path / "scans"
    for name in ("a.nii.gz", "b.nrrd", "c.mha"):
        volume(root / name)
    dicom = root / "d_series"
    dicom.mkdir()
    (dicom / "1.dcm").write_bytes(b"\0")
    table = pd.DataFrame({
        "Accession": ["A", "B", "C", "D"], "MRN": ["m1", "m2", "m3", "m4"],
        "file": ["a.nii.gz", "b.nrrd", "c.mha", "d_series"], "os_days": [100.0, 5.5, 30.0, 12.0],
        "dead": [1, 0, 0, 1], "AgeYears": [50, 60, 70, 80], "txt": ["r", "r", "r", "r"],
    })
    (tmp_path / "tables").mkdir()
    table.to_parquet(tmp_path / "tables" / "m.parquet")
    spec = {
        "adapter": "manifest", "role": "survival", "path": str(tmp_path / "tables" / "m.parquet"), "image_root": str(root),
        "columns": {"study_id": "Accession", "patient_id": "MRN", "image": "file", "time": "os_days", "event": "dead",
                    "age": "AgeYears", "report": "txt"},
        "clinical": {"age": {"type": "int"}},
    }
    cohort = build_cohort("mine", spec, SPLITS)
    assert cohort["study_id"].tolist() == ["A", "B", "C", "D"]
    assert cohort["image"].tolist() == [str((root / f).absolute()) for f in table["file"]]
    assert cohort["age"].tolist() == [50, 60, 70, 80] and cohort["event"].tolist() == [1, 0, 0, 1]
    assert input_files(spec) == [spec["path"]]


def test_manifest_names_missing_required_columns_and_bad_mapping(tmp_path):
    pd.DataFrame({"study_id": ["a"], "image": ["a.nii"]}).to_csv(tmp_path / "m.csv", index=False)
    spec = {"adapter": "manifest", "role": "survival", "path": str(tmp_path / "m.csv")}
    with pytest.raises(DataError, match=r"m.csv: column\(s\) \['patient_id', 'time', 'event'\] not found"):
        load_dataset("x", spec, SPLITS)
    spec["columns"] = {"report": "ReportText"}
    spec["role"] = "pretrain"
    pd.DataFrame({"study_id": ["a"], "patient_id": ["p"], "image": ["a.nii"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ConfigError, match=r"\['ReportText'\]"):
        load_dataset("x", spec, SPLITS)


def write_demo(folder, companions=True):
    volume(folder / "images" / "d1.nii.gz")
    volume(folder / "images" / "d2.nii.gz")
    pd.DataFrame({"study_id": ["d1", "d2"], "patient_id": ["p1", "p2"], "image": ["images/d1.nii.gz", "images/d2.nii.gz"],
                  "report": ["x", "y"], "time": [3.0, 4.0], "event": [1, 0], "age": [40, 41]}).to_csv(folder / "manifest.csv", index=False)
    if companions:
        pd.DataFrame({"study_id": ["d1"]}).to_parquet(folder / "gold_answers.parquet")
        pd.DataFrame({"study_id": ["d1"]}).to_parquet(folder / "truth.parquet")


def test_demo_adapter_reads_manifest_and_requires_companion_files(tmp_path):
    folder = tmp_path / "demo_lung"
    write_demo(folder, companions=False)
    spec = {"adapter": "demo", "role": "survival", "path": str(folder), "clinical": {"age": {"type": "int"}}}
    with pytest.raises(DataError, match=r"\['gold_answers.parquet', 'truth.parquet'\] not found.*demo-cohort"):
        load_dataset("demo_lung", spec, SPLITS)
    write_demo(folder)
    cohort = build_cohort("demo_lung", spec, SPLITS)
    assert cohort["image"].tolist() == [str((folder / "images" / f"{s}.nii.gz").absolute()) for s in ("d1", "d2")]
    assert input_files(spec) == [str(folder / "manifest.csv")]


# ---------------------------------------------------------------- CT-RATE


def write_ct_rate(root):
    names = ["train_1_a_1.nii.gz", "train_1_a_2.nii.gz", "train_2_a_1.nii.gz", "valid_7_b_1.nii.gz"]
    for name in names:
        split, patient, scan, _ = name.removesuffix(".nii.gz").split("_")
        volume(root / "dataset" / split / f"{split}_{patient}" / f"{split}_{patient}_{scan}" / name)
    pd.DataFrame({
        "VolumeName": names, "ClinicalInformation_EN": ["c"] * 4, "Technique_EN": ["t"] * 4,
        "Findings_EN": ["Lungs clear.", "Nodule 5 mm.", "Effusion.", None], "Impressions_EN": ["Normal.", "Nodule.", None, "Normal."],
    }).to_csv(root / "reports.csv", index=False)
    pd.DataFrame({
        "VolumeName": names[::-1], "XYSpacing": ["[0.7, 0.7]", "[0.5, 0.6]", "[0.68, 0.68]", "[0.75, 0.8]"],
        "ZSpacing": [1.0, 2.0, 1.5, 3.0], "RescaleSlope": [1, 1, 1, 2], "RescaleIntercept": [-1024, -1024, -1000, -8192],
        "PatientAge": ["030Y", "045Y", "063Y", "063Y"], "PatientSex": ["F", "M", "M", "M"],
    }).to_csv(root / "metadata.csv", index=False)
    return names


def ct_rate_spec(root):
    return {"adapter": "ct_rate", "role": "pretrain", "reports": str(root / "reports.csv"), "metadata": [str(root / "metadata.csv")],
            "volumes": str(root / "dataset"), "columns": {"age": "PatientAge", "sex": "PatientSex"},
            "clinical": {"age": {"type": "int"}, "sex": {"type": "category", "categories": ["female", "male"]}}}


def test_ct_rate_layout_reports_spacing_rescale_and_patients(tmp_path):
    write_ct_rate(tmp_path)
    cohort = build_cohort("ctrate", ct_rate_spec(tmp_path), SPLITS).set_index("study_id")
    assert cohort.index.tolist() == ["train_1_a_1", "train_1_a_2", "train_2_a_1", "valid_7_b_1"]
    assert cohort["patient_id"].tolist() == ["train_1", "train_1", "train_2", "valid_7"]
    assert cohort.loc["train_1_a_1", "image"].endswith("dataset/train/train_1/train_1_a/train_1_a_1.nii.gz")
    assert cohort.loc["train_1_a_1", "report"] == "Lungs clear.\n\nNormal."
    assert cohort.loc["train_2_a_1", "report"] == "Effusion." and cohort.loc["valid_7_b_1", "report"] == "Normal."
    row = cohort.loc["train_1_a_2"]  # metadata rows are in reverse order
    assert (row.spacing_x, row.spacing_y, row.spacing_z, row.rescale_slope, row.rescale_intercept) == (0.68, 0.68, 1.5, 1.0, -1000.0)
    assert cohort.loc["train_1_a_1", "spacing_z"] == 3.0 and cohort.loc["train_1_a_1", "rescale_slope"] == 2.0
    assert cohort.loc["train_1_a_1", "age"] == 63 and cohort.loc["valid_7_b_1", "sex"] == "female"
    assert cohort["time"].isna().all()
    source = build_cohort("ctrate", {**ct_rate_spec(tmp_path), "use_source_splits": True}, SPLITS)
    assert source["split"].tolist() == ["train", "train", "train", "val"]


def test_ct_rate_errors_name_metadata_row_and_missing_volume(tmp_path):
    write_ct_rate(tmp_path)
    meta = pd.read_csv(tmp_path / "metadata.csv")
    meta.loc[2, "XYSpacing"] = "0.68 mm"
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match=r"metadata.csv, row 4, study 'train_1_a_2.nii.gz', column 'XYSpacing': cannot read '0.68 mm'"):
        load_dataset("ctrate", ct_rate_spec(tmp_path), SPLITS)
    meta.drop(index=2).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match=r"reports.csv, row 3, column 'VolumeName': volume 'train_1_a_2.nii.gz' has no row"):
        load_dataset("ctrate", ct_rate_spec(tmp_path), SPLITS)


# ---------------------------------------------------------------- INSPECT


def write_inspect(root, minutes=True):
    ids = ["i1", "i2", "i3", "i4"]
    for n in range(4):
        volume(root / "CTPA" / f"img{n}.nii.gz")
    pd.DataFrame({"impression_id": ids, "image_id": [f"img{n}" for n in range(4)], "person_id": ["7", "7", "8", "9"],
                  "procedure_DATETIME": ["2019-01-10 10:00", "2020-03-01 09:00", "2018-06-01 12:00", "2021-01-01 00:00"],
                  "note_DATETIME": ["2019-01-10"] * 4}).to_csv(root / "study_mapping_20250611.tsv", sep="\t", index=False)
    pd.DataFrame({"impression_id": ids[::-1], "impressions": ["no pe", "acute pe", "chronic", "saddle pe"]}).to_csv(
        root / "impressions_20250611.tsv", sep="\t", index=False)
    days = np.array([400.0, 30.0, 2000.0, 3650.0])
    pd.DataFrame({"impression_id": ids, "tte_mortality": days * (1440 if minutes else 1), "is_censored_mortality": ["TRUE", "FALSE", "True", "False"],
                  "pe_positive_nlp": ["TRUE", "TRUE", "FALSE", "TRUE"], "pe_subsegmentalonly": ["FALSE"] * 4,
                  "12_month_mortality": ["FALSE", "TRUE", "Censored", "FALSE"]}).to_csv(root / "labels_20250611.tsv", sep="\t", index=False)
    pd.DataFrame({"impression_id": ids, "split": ["train", "train", "valid", "test"]}).to_csv(root / "splits_20250611.tsv", sep="\t", index=False)
    pd.DataFrame({
        "person_id": ["7", "7", "7", "7", "8", "9"],
        "time": ["2019-01-09 08:00", "2019-01-10 10:00", "2020-02-01 00:00", "2019-01-09 09:00", "2018-06-02 00:00", "2020-12-31 00:00"],
        "code": ["LOINC/8310-5", "LOINC/8310-5", "LOINC/8310-5", "LOINC/8867-4", "LOINC/8310-5", "LOINC/8867-4"],
        "value": ["98.6", "104", "99.5", "65", "97.0", "88"],
    }).to_csv(root / "ehr.csv", index=False)


def inspect_spec(root, **extra):
    return {"adapter": "inspect", "role": "survival", "path": str(root), "ehr": str(root / "ehr.csv"),
            "vitals": {"temperature": "LOINC/8310-5", "pulse": "LOINC/8867-4"},
            "columns": {"pe_positive": "pe_positive_nlp", "subsegmental_only": "pe_subsegmentalonly"},
            "clinical": {"pe_positive": {"type": "bool"}, "subsegmental_only": {"type": "bool"},
                         "temperature": {"type": "float"}, "pulse": {"type": "float"}}, **extra}


def test_inspect_joins_files_converts_minutes_and_takes_vitals_before_the_study(tmp_path):
    write_inspect(tmp_path)
    cohort = build_cohort("inspect", inspect_spec(tmp_path), SPLITS).set_index("study_id")
    assert cohort["patient_id"].tolist() == ["7", "7", "8", "9"]
    assert cohort["time"].tolist() == [400.0, 30.0, 2000.0, 3650.0]  # minutes -> days
    assert cohort["event"].tolist() == [0, 1, 0, 1]
    assert cohort.loc["i2", "report"] == "chronic" and cohort.loc["i1", "report"] == "saddle pe"
    assert cohort.loc["i3", "image"] == str((tmp_path / "CTPA" / "img2.nii.gz").absolute())
    assert cohort["pe_positive"].tolist() == [True, True, False, True]
    # i1 at 2019-01-10 10:00: the 10:00 reading is not *before* the study; the day before is.
    assert cohort.loc["i1", "temperature"] == 98.6 and cohort.loc["i1", "pulse"] == 65.0
    assert cohort.loc["i2", "temperature"] == 99.5  # the latest before 2020-03-01
    assert pd.isna(cohort.loc["i3", "temperature"])  # only a later measurement
    assert cohort.loc["i4", "pulse"] == 88.0 and pd.isna(cohort.loc["i4", "temperature"])
    source = build_cohort("inspect", inspect_spec(tmp_path, use_source_splits=True), SPLITS)
    assert source["split"].tolist() == ["train", "train", "val", "test"]
    assert str(tmp_path / "splits_20250611.tsv") in input_files(inspect_spec(tmp_path, use_source_splits=True))


def test_inspect_time_unit_inference_and_override(tmp_path):
    years = 8 * 365.25
    assert infer_time_unit(pd.Series([years])) == "days"
    assert infer_time_unit(pd.Series([years * 24])) == "hours"
    assert infer_time_unit(pd.Series([years * 1440])) == "minutes"
    assert infer_time_unit(pd.Series([years * 86400])) == "seconds"
    write_inspect(tmp_path, minutes=False)
    cohort = build_cohort("inspect", inspect_spec(tmp_path), SPLITS)
    assert cohort["time"].tolist() == [400.0, 30.0, 2000.0, 3650.0]
    hours = build_cohort("inspect", inspect_spec(tmp_path, time_unit="hours"), SPLITS)
    assert hours["time"].tolist() == pytest.approx([400 / 24, 30 / 24, 2000 / 24, 3650 / 24])


def test_inspect_bad_vital_value_names_the_ehr_file_row(tmp_path):
    write_inspect(tmp_path)
    ehr = pd.read_csv(tmp_path / "ehr.csv", dtype=str)
    ehr.loc[2, "value"] = "febrile"
    ehr.to_csv(tmp_path / "ehr.csv", index=False)
    with pytest.raises(DataError, match=r"ehr.csv, row 4, column 'value': not a number: 'febrile'"):
        load_dataset("inspect", inspect_spec(tmp_path), SPLITS)


# ---------------------------------------------------------------- CT-RATE as released today


def write_ct_rate_release(root, hu=True):
    """The release's dataset/ folder: *_fixed volumes (HU, or raw values), reports and metadata in
    their folders, no_chest_train.txt; the original train/ folder holds raw values."""
    names = ["train_1_a_1.nii.gz", "train_1_a_2.nii.gz", "train_2_a_1.nii.gz", "train_3_a_1.nii.gz", "valid_7_b_1.nii.gz"]
    rng = np.random.default_rng(0)
    for name in names:
        split, patient, scan, _ = name.removesuffix(".nii.gz").split("_")
        raw = rng.integers(0, 2000, size=(8, 8, 8)).astype(np.int16)  # stored values, air at 0
        for folder, values in ((f"{split}_fixed", raw - 1024 if hu else raw), (split, raw)):
            path = root / "dataset" / folder / f"{split}_{patient}" / f"{split}_{patient}_{scan}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    (root / "dataset" / "radiology_text_reports").mkdir()
    (root / "dataset" / "metadata").mkdir()
    for part, rows in (("train", names[:4]), ("validation", names[4:])):
        pd.DataFrame({"VolumeName": rows, "ClinicalInformation_EN": "c", "Technique_EN": "t", "Findings_EN": "Lungs clear.",
                      "Impressions_EN": "Normal."}).to_csv(root / "dataset" / "radiology_text_reports" / f"{part}_reports.csv", index=False)
        pd.DataFrame({"VolumeName": rows, "XYSpacing": "[0.7, 0.7]", "ZSpacing": 1.5, "RescaleSlope": 1,
                      "RescaleIntercept": -1024}).to_csv(root / "dataset" / "metadata" / f"{part}_metadata.csv", index=False)
    (root / "dataset" / "no_chest_train.txt").write_text("train_2_a_1.nii.gz\ntrain_99_a_1.nii.gz\n", encoding="utf-8")


def test_ct_rate_release_reads_fixed_volumes_excludes_non_chest_and_keeps_their_hu(tmp_path, caplog):
    from ctsurv.imaging.io import hu_summary, read_ct

    write_ct_rate_release(tmp_path)
    spec = {"adapter": "ct_rate", "role": "pretrain", "path": str(tmp_path / "dataset")}
    caplog.set_level("INFO", logger="ctsurv")
    cohort = build_cohort("ctrate", spec, SPLITS).set_index("study_id")
    assert cohort.index.tolist() == ["train_1_a_1", "train_1_a_2", "train_3_a_1", "valid_7_b_1"]  # train_2_a_1: not a chest CT
    assert cohort.loc["valid_7_b_1", "image"].endswith("dataset/valid_fixed/valid_7/valid_7_b/valid_7_b_1.nii.gz")
    assert cohort["rescale_slope"].isna().all() and cohort["spacing_z"].tolist() == [1.5] * 4
    log = caplog.text
    assert "1 of 5 volumes left out as listed in" in log and "no_chest_train.txt" in log and "1 names of the lists are not in" in log
    assert "already hold Hounsfield units" in log and "is NOT applied" in log
    row = cohort.loc["train_1_a_1"]
    hu = hu_summary(read_ct(row.image, "train_1_a_1", spacing=(0.7, 0.7, 1.5)))
    assert -1024 <= hu["hu_min"] < -1000 and hu["hu_p01"] < -800  # air stays air (applied twice: -2048)
    files = input_files(spec)
    assert [f.rsplit("/", 1)[1] for f in files] == ["train_reports.csv", "validation_reports.csv", "train_metadata.csv",
                                                    "validation_metadata.csv", "no_chest_train.txt"]


def test_ct_rate_release_with_raw_values_applies_the_metadata_rescale(tmp_path, caplog):
    write_ct_rate_release(tmp_path, hu=False)
    spec = {"adapter": "ct_rate", "role": "pretrain", "path": str(tmp_path / "dataset"), "exclude": []}
    caplog.set_level("INFO", logger="ctsurv")
    cohort = build_cohort("ctrate", spec, SPLITS)
    assert len(cohort) == 5 and cohort["rescale_intercept"].tolist() == [-1024.0] * 5
    assert "hold raw values" in caplog.text and "RescaleIntercept is applied" in caplog.text
    forced = build_cohort("ctrate", {**spec, "rescale": "none"}, SPLITS)
    assert forced["rescale_intercept"].isna().all()
