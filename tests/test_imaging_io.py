"""Reading CT (NIfTI, NRRD, MHA, DICOM), bad-image errors, the cache, QC and the CLI."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ctsurv.cli import main as cli_main
from ctsurv.errors import DataError
from ctsurv.imaging.cache import (
    cached_study_ids,
    load_preprocessed,
    volume_path,
    write_entry,
)
from ctsurv.imaging.cohort_cache import preprocess_cohort
from ctsurv.imaging.io import BadImageError, check_slice_positions, read_ct
from ctsurv.imaging.qc import QC_COLUMNS, qc_montage, write_qc_table

SPACING, SIZE = (3.0, 3.0, 4.0), (12, 12, 8)


def ct_array(shape_zyx=(10, 16, 14), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(-100, 300, shape_zyx)
    a[:, :3] = -1000
    return np.clip(a, -1024, 2000).astype(np.int16)


def write_image(path, array, spacing=(0.8, 0.8, 2.0), direction=None):
    img = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    img.SetSpacing(spacing[: img.GetDimension()])
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return path


def write_dicom_series(folder, array, z_positions, series_uid="1.2.826.0.1.3680043.2.1125.1", slope=1.0, intercept=-1024.0):
    """One CT slice file per z position, with Rescale Slope/Intercept tags.

    SimpleITK's GDCM writer stores (HU - intercept) / slope itself when the tags are set,
    so it gets the HU values; reading must apply the rescale to get them back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for n, (plane, z) in enumerate(zip(array, z_positions)):
        img = sitk.GetImageFromArray(plane[None].astype(np.int16))
        img.SetSpacing((0.7, 0.7, 1.0))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{n + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.9",
            "0020|000e": series_uid,
            "0020|0013": str(n + 1),
            "0020|0032": f"-10\\-20\\{z}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": "0.7\\0.7",
            "0028|1053": str(slope),
            "0028|1052": str(intercept),
        }
        for k, v in tags.items():
            img.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"{series_uid[-3:]}_{n:03d}.dcm"))
        writer.Execute(img)
    return folder


# -- reading ---------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_reads_file_formats_with_geometry(tmp_path, suffix):
    a = ct_array()
    direction = (0, 1, 0, -1, 0, 0, 0, 0, 1)
    path = write_image(tmp_path / f"ct{suffix}", a, direction=direction)
    vol = read_ct(path, study_id="s1")
    np.testing.assert_array_equal(vol.array, a)
    assert vol.shape_xyz == (14, 16, 10)
    np.testing.assert_allclose(vol.spacing, (0.8, 0.8, 2.0), rtol=1e-6)
    # LPS direction columns (0,-1,0), (1,0,0), (0,0,1) -> RAS codes A, L, S
    assert vol.orientation == "ALS"


def test_dicom_series_sorted_by_position_with_rescale(tmp_path):
    a = ct_array((6, 8, 9))
    zs = [4.0, 0.0, 10.0, 2.0, 8.0, 6.0]  # written out of order on purpose
    order = np.argsort(zs)
    write_dicom_series(tmp_path / "dcm", a, zs)
    vol = read_ct(tmp_path / "dcm", study_id="d1")
    assert vol.info["format"] == "dicom"
    np.testing.assert_allclose(vol.spacing, (0.7, 0.7, 2.0), rtol=1e-6)
    np.testing.assert_array_equal(vol.array * vol.slope + vol.intercept, a[order])


def test_dicom_two_series_in_one_folder(tmp_path):
    a = ct_array((3, 8, 9))
    write_dicom_series(tmp_path / "dcm", a, [0, 2, 4], series_uid="1.2.3.4.100")
    write_dicom_series(tmp_path / "dcm", a, [0, 2, 4], series_uid="1.2.3.4.200")
    with pytest.raises(BadImageError, match=r"study 'p7'.*2 DICOM series") as err:
        read_ct(tmp_path / "dcm", study_id="p7")
    assert err.value.flag == "several series"


def test_dicom_missing_slice(tmp_path):
    a = ct_array((5, 8, 9))
    write_dicom_series(tmp_path / "dcm", a, [0, 2, 4, 8, 10])  # slice at 6 mm missing
    with pytest.raises(BadImageError, match=r"study 'p8'.*missing slices.*4 and 8 mm.*1 slice") as err:
        read_ct(tmp_path / "dcm", study_id="p8")
    assert err.value.flag == "missing slices"


def test_slice_position_checks():
    assert check_slice_positions(np.array([3.0, 0.0, 1.5, 4.5]), "s") == pytest.approx(1.5)
    with pytest.raises(BadImageError, match="uneven slice spacing"):
        check_slice_positions(np.array([0.0, 1.0, 2.0, 3.2, 4.2]), "s")
    with pytest.raises(BadImageError, match="share one position"):
        check_slice_positions(np.array([0.0, 1.0, 1.0, 2.0]), "s")


def test_bad_images_are_named(tmp_path):
    good = write_image(tmp_path / "good.nii.gz", ct_array())
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:400])
    rgb = write_image(tmp_path / "rgb.nii.gz", np.zeros((6, 8, 9, 3), dtype=np.uint8))
    flat = write_image(tmp_path / "flat.nii.gz", ct_array()[0])
    labels = write_image(tmp_path / "labels.nii.gz", (ct_array() > 0).astype(np.uint8) * 3)
    mr = write_image(tmp_path / "mr.nii.gz", np.abs(ct_array()).astype(np.int16) + 50)
    expected = {truncated: "unreadable", rgb: "multi-component", flat: "2D image", labels: "label map",
                mr: "not CT-like", tmp_path / "absent.nii.gz": "not found"}
    for path, flag in expected.items():
        with pytest.raises(BadImageError) as err:
            read_ct(path, study_id=f"s_{path.stem}")
        assert err.value.flag == flag, (path, str(err.value))
        assert f"s_{path.stem}" in str(err.value) and str(path) in str(err.value)


def test_overrides_replace_header(tmp_path):
    raw = np.full((5, 6, 7), 24, dtype=np.int16)  # stored value; HU = 2 * 24 - 1048 = -1000
    raw[2] = 600  # HU 152
    path = write_image(tmp_path / "ctrate.nii.gz", raw, spacing=(1.0, 1.0, 1.0))
    vol = read_ct(path, spacing=(0.7, 0.7, 1.5), rescale=(2.0, -1048.0))
    np.testing.assert_allclose(vol.spacing, (0.7, 0.7, 1.5))
    hu = vol.array * vol.slope + vol.intercept
    assert hu.min() == -1000 and hu.max() == 152


# -- cache -----------------------------------------------------------------------------

@pytest.mark.parametrize("precision,tol", [("uint16", 7.7e-6), ("float16", 2.5e-4), ("float32", 0.0)])
def test_cache_precision(tmp_path, precision, tol):
    v = np.random.default_rng(1).random((5, 6, 7), dtype=np.float32)
    write_entry(tmp_path, "a/b c", v, {"k": 1}, precision)
    out = load_preprocessed(tmp_path, "a/b c")
    assert out.dtype == np.float32 and out.shape == v.shape
    err = np.abs(out - v).max()
    assert err <= tol and (tol == 0 or err > tol / 10)
    assert cached_study_ids(tmp_path) == ["a/b c"]
    with pytest.raises(DataError, match="'missing' is not in the preprocessed cache"):
        load_preprocessed(tmp_path, "missing")


def _cohort(tmp_path):
    images = {
        "s1": write_image(tmp_path / "s1.nii.gz", ct_array(seed=1)),
        "s2": write_image(tmp_path / "s2.mha", ct_array((12, 14, 15), seed=2), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)),
        "bad": tmp_path / "bad.nii.gz",
    }
    images["bad"].write_bytes(b"not an image")
    return pd.DataFrame({"study_id": list(images), "image": [str(p) for p in images.values()]})


def test_preprocess_cohort_skip_and_resume(tmp_path):
    cohort = _cohort(tmp_path)
    cache = tmp_path / "ct"
    qc = preprocess_cohort(cohort, cache, SPACING, SIZE, workers=1, on_bad_image="skip")
    assert qc["study_id"].tolist() == ["s1", "s2", "bad"]
    assert qc["status"].tolist() == ["ok", "ok", "bad"]
    assert qc.loc[2, "flags"] == "unreadable" and "study 'bad'" in qc.loc[2, "error"]
    assert qc.loc[0, "shape_x"] == 14 and qc.loc[1, "orientation"] == "RAS"
    assert cached_study_ids(cache) == ["s1", "s2"]
    assert load_preprocessed(cache, "s1").shape == SIZE

    mtime = volume_path(cache, "s1").stat().st_mtime_ns
    again = preprocess_cohort(cohort, cache, SPACING, SIZE, workers=1, on_bad_image="skip")
    assert again["status"].tolist() == ["cached", "cached", "bad"]
    assert again.loc[0, "hu_min"] == qc.loc[0, "hu_min"]
    assert volume_path(cache, "s1").stat().st_mtime_ns == mtime

    # a changed source is redone; other settings redo everything
    write_image(tmp_path / "s1.nii.gz", ct_array(seed=5))
    os.utime(tmp_path / "s1.nii.gz", ns=(mtime + 10**9, mtime + 10**9))
    assert preprocess_cohort(cohort, cache, SPACING, SIZE, on_bad_image="skip")["status"].tolist() == ["ok", "cached", "bad"]
    assert preprocess_cohort(cohort, cache, SPACING, (10, 10, 6), on_bad_image="skip")["status"].tolist() == ["ok", "ok", "bad"]
    assert load_preprocessed(cache, "s2").shape == (10, 10, 6)

    # QC table and montage
    write_qc_table(again, tmp_path / "qc.parquet")
    back = pd.read_parquet(tmp_path / "qc.parquet")
    assert back.columns.tolist() == QC_COLUMNS and len(back) == 3
    png = qc_montage(cache, ["s1", "s2"], tmp_path / "montage.png", spacing=SPACING)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_preprocess_cohort_error_keeps_good_work(tmp_path):
    cohort = _cohort(tmp_path)
    with pytest.raises(DataError, match=r"(?s)1 of 3 images.*study 'bad'.*on_bad_image: skip"):
        preprocess_cohort(cohort, tmp_path / "ct", SPACING, SIZE, workers=2, on_bad_image="error")
    assert cached_study_ids(tmp_path / "ct") == ["s1", "s2"]


# -- command line ----------------------------------------------------------------------

def test_cli_preprocess_ct(tmp_path, capsys):
    src = write_image(tmp_path / "ct.nii.gz", ct_array(), direction=(0, 1, 0, -1, 0, 0, 0, 0, 1))
    args = ["preprocess-ct", str(src), "OUT", "--spacing", *map(str, SPACING), "--size", *map(str, SIZE)]
    assert cli_main([a if a != "OUT" else str(tmp_path / "o.npy") for a in args]) == 0
    assert cli_main([a if a != "OUT" else str(tmp_path / "o.nii.gz") for a in args]) == 0
    npy = np.load(tmp_path / "o.npy")
    assert npy.dtype == np.float32 and npy.shape == SIZE
    nii = sitk.ReadImage(str(tmp_path / "o.nii.gz"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(nii).transpose(2, 1, 0), npy)
    np.testing.assert_allclose(nii.GetSpacing(), SPACING, rtol=1e-5)
    np.testing.assert_allclose(nii.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-6)  # RAS in ITK's LPS terms

    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b broken")
    assert cli_main(["preprocess-ct", str(tmp_path / "broken.nii.gz"), str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "corrupt" in err and "Traceback" not in err
