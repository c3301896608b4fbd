"""Preprocessing hardening (issue 12): which errors make an image "bad" (item 4), thread
counts from the caller (item 10), the cache's storage / cohort split (item 18) and impossible
geometry (item 20)."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from ctsurv.errors import CtsurvError, DataError
from ctsurv.imaging.cache import cached_study_ids
from ctsurv.imaging.cohort_cache import preprocess_cohort
from ctsurv.imaging.io import BadImageError, read_ct
from ctsurv.imaging.preprocess import preprocess_volume

SPACING, SIZE = (3.0, 3.0, 4.0), (12, 12, 8)


def ct_array(shape_zyx=(10, 16, 14), seed=0, dtype=np.int16):
    rng = np.random.default_rng(seed)
    a = rng.normal(-100, 300, shape_zyx)
    a[:, :3] = -1000
    return np.clip(a, -1024, 2000).astype(dtype)


def write_image(path, array, spacing=(0.8, 0.8, 2.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def one_study(tmp_path, path):
    return pd.DataFrame({"study_id": ["s1"], "image": [str(path)]})


# -- item 4: only image errors make an image "bad" ----------------------------------------

@pytest.mark.parametrize("error", [MemoryError, TypeError, KeyError])
def test_memory_and_programming_errors_stop_the_run(tmp_path, monkeypatch, error):
    """With on_bad_image: skip, a MemoryError or a bug must not silently drop the patient."""
    import ctsurv.imaging.preprocess as preprocess

    def broken(*args, **kwargs):
        raise error("boom")

    monkeypatch.setattr(preprocess, "preprocess_volume", broken)
    src = write_image(tmp_path / "s1.nii.gz", ct_array())
    with pytest.raises(error):
        preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", SPACING, SIZE, on_bad_image="skip")


def test_image_errors_still_mark_the_study_bad(tmp_path, monkeypatch):
    import ctsurv.imaging.preprocess as preprocess

    def degenerate(*args, **kwargs):
        raise DataError("the image affine is sheared")

    monkeypatch.setattr(preprocess, "preprocess_volume", degenerate)
    src = write_image(tmp_path / "s1.nii.gz", ct_array())
    qc = preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", SPACING, SIZE, on_bad_image="skip")
    assert qc["status"].tolist() == ["bad"] and "sheared" in qc.loc[0, "error"]


def test_unreadable_file_is_bad_not_a_crash(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b not a gzip stream")
    (tmp_path / "bad2.nii").write_bytes(b"short")
    cohort = pd.DataFrame({"study_id": ["a", "b"], "image": [str(tmp_path / "bad.nii.gz"), str(tmp_path / "bad2.nii")]})
    qc = preprocess_cohort(cohort, tmp_path / "ct", SPACING, SIZE, on_bad_image="skip")
    assert qc["status"].tolist() == ["bad", "bad"] and set(qc["flags"]) == {"unreadable"}


# -- item 10: threads come from the caller, not the CPU affinity ---------------------------

class _Pools:
    def __init__(self, monkeypatch):
        import concurrent.futures

        self.sizes: list[int] = []
        real = concurrent.futures.ThreadPoolExecutor
        sizes = self.sizes

        class Recording(real):
            def __init__(self, max_workers=None, *args, **kwargs):
                sizes.append(max_workers)
                super().__init__(max_workers, *args, **kwargs)

        monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Recording)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)


def test_preprocess_volume_uses_the_threads_it_is_given(tmp_path, monkeypatch):
    pools = _Pools(monkeypatch)
    volume = read_ct(write_image(tmp_path / "s1.nii.gz", ct_array()))
    one = preprocess_volume(volume, SPACING, SIZE)
    assert pools.sizes == []  # default: one thread, never the 64 CPUs of the machine
    two = preprocess_volume(volume, SPACING, SIZE, threads=2)
    assert pools.sizes == [2]
    np.testing.assert_array_equal(one.array, two.array)


def test_preprocess_cohort_splits_the_rules_threads_over_its_workers(tmp_path, monkeypatch):
    pools = _Pools(monkeypatch)
    src = write_image(tmp_path / "s1.nii.gz", ct_array())
    preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", SPACING, SIZE, workers=1, threads=3)
    assert pools.sizes == [3]
    preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct2", SPACING, SIZE, workers=1)
    assert pools.sizes == [3]  # default threads=1: no pool


# -- item 18: storage and cohort orchestration in two modules -----------------------------

def test_cache_storage_and_cohort_orchestration_are_separate_modules():
    import ctsurv.imaging.cache as cache
    import ctsurv.imaging.cohort_cache as cohort_cache

    assert cohort_cache.preprocess_cohort is preprocess_cohort
    for name in ("preprocess_cohort", "study_key", "source_fingerprint", "CHAIN_VERSION"):
        assert hasattr(cohort_cache, name) and not hasattr(cache, name)  # no re-export shim (issue 23)
    assert cache.load_preprocessed.__module__ == "ctsurv.imaging.cache"
    assert not hasattr(cohort_cache, "decode")


# -- item 20: impossible geometry ---------------------------------------------------------

@pytest.mark.parametrize("spacing", [(1e-6, 1e-6, 1e-6), (1e6, 1e6, 1e6), (0.8, 0.8, 1e-6)])
def test_implausible_header_spacing_is_rejected(tmp_path, spacing):
    src = write_image(tmp_path / "s1.nii.gz", ct_array(), spacing=spacing)
    with pytest.raises(BadImageError, match=r"study 's1'.*spacing.*spacing_x") as err:
        read_ct(src, study_id="s1")
    assert err.value.flag == "implausible spacing"
    qc = preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", SPACING, SIZE, on_bad_image="skip")
    assert qc["status"].tolist() == ["bad"] and cached_study_ids(tmp_path / "ct") == []
    # a cohort override with a real spacing makes it usable
    fixed = one_study(tmp_path, src).assign(spacing_x=0.8, spacing_y=0.8, spacing_z=2.0)
    assert preprocess_cohort(fixed, tmp_path / "ct", SPACING, SIZE)["status"].tolist() == ["ok"]


def test_implausible_spacing_override_is_rejected(tmp_path):
    src = write_image(tmp_path / "s1.nii.gz", ct_array())
    with pytest.raises(BadImageError, match="spacing"):
        read_ct(src, study_id="s1", spacing=(0.8, 0.8, 5e4))


def _nifti_with_pixdim_zero(tmp_path):
    src = write_image(tmp_path / "s1.nii", ct_array())
    raw = bytearray(src.read_bytes())
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1] (x spacing) = 0
    raw[252:256] = struct.pack("<hh", 0, 0)  # no qform / sform: the spacing comes from pixdim
    src.write_bytes(bytes(raw))
    return src


def test_nifti_with_pixdim_zero_is_rejected(tmp_path):
    src = _nifti_with_pixdim_zero(tmp_path)
    assert sitk.ReadImage(str(src)).GetSpacing()[0] == 1.0  # ITK silently makes it 1 mm
    with pytest.raises(BadImageError, match=r"pixdim.*spacing_x") as err:
        read_ct(src, study_id="s1")
    assert err.value.flag == "no spacing"
    assert read_ct(src, study_id="s1", spacing=(0.8, 0.8, 2.0)).spacing == pytest.approx((0.8, 0.8, 2.0))


def _nrrd_without_spacing(tmp_path):
    src = write_image(tmp_path / "s1.nrrd", ct_array())
    header, body = src.read_bytes().split(b"\n\n", 1)
    lines = [ln for ln in header.split(b"\n") if not ln.startswith((b"space", b"spacings"))]
    src.write_bytes(b"\n".join(lines) + b"\n\n" + body)
    return src


def test_nrrd_without_spacing_is_rejected(tmp_path):
    src = _nrrd_without_spacing(tmp_path)
    assert sitk.ReadImage(str(src)).GetSpacing() == (1.0, 1.0, 1.0)  # ITK assumes 1 mm
    with pytest.raises(BadImageError, match=r"NRRD.*no spacing.*spacing_x") as err:
        read_ct(src, study_id="s1")
    assert err.value.flag == "no spacing"
    assert read_ct(src, study_id="s1", spacing=(0.8, 0.8, 2.0)).spacing == pytest.approx((0.8, 0.8, 2.0))
    ok = write_image(tmp_path / "ok.nrrd", ct_array())
    assert read_ct(ok).spacing == pytest.approx((0.8, 0.8, 2.0))


@pytest.mark.parametrize("bad", [(math.nan, 4.0, 6.0), (0.0, 4.0, 6.0), (-1.0, 4.0, 6.0), (math.inf, 1.0, 1.0), (1.0, 1.0)])
def test_non_finite_or_non_positive_target_spacing_is_rejected(tmp_path, bad):
    volume = read_ct(write_image(tmp_path / "s1.nii.gz", ct_array()))
    with pytest.raises(CtsurvError, match="spacing"):
        preprocess_volume(volume, bad, SIZE)
    with pytest.raises(CtsurvError, match="spacing"):
        preprocess_cohort(one_study(tmp_path, tmp_path / "s1.nii.gz"), tmp_path / "ct", bad, SIZE)


def test_bad_target_size_is_rejected(tmp_path):
    volume = read_ct(write_image(tmp_path / "s1.nii.gz", ct_array()))
    with pytest.raises(CtsurvError, match="size"):
        preprocess_volume(volume, SPACING, (12, 0, 8))


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_nan_voxels_are_rejected(tmp_path, suffix):
    """ITK's NIfTI reader turns NaN into 0 silently; the MHA reader keeps it."""
    array = ct_array(dtype=np.float32)
    array[4, 5, 6] = np.nan
    src = write_image(tmp_path / f"s1{suffix}", array)
    with pytest.raises(BadImageError, match=r"study 's1'.*1 voxel.*NaN") as err:
        read_ct(src, study_id="s1")
    assert err.value.flag == "non-finite values"
    qc = preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", SPACING, SIZE, on_bad_image="skip")
    assert qc["status"].tolist() == ["bad"] and qc.loc[0, "flags"] == "non-finite values"


def test_constant_output_is_never_ok(tmp_path):
    """Air everywhere except one dense voxel that the 4 mm grid never samples: a blank volume."""
    array = np.full((20, 20, 20), -1024, dtype=np.int16)
    array[10, 10, 2] = 1500  # x index 2: the 4 mm grid samples x = 0, 4, 8, ... of the 1 mm input
    src = write_image(tmp_path / "s1.nii.gz", array, spacing=(1.0, 1.0, 1.0))
    qc = preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", (4.0, 4.0, 4.0), (6, 6, 6), on_bad_image="skip")
    assert qc["status"].tolist() == ["bad"] and qc.loc[0, "flags"] == "constant output"
    assert "constant" in qc.loc[0, "error"] and cached_study_ids(tmp_path / "ct") == []
    with pytest.raises(DataError, match="constant"):
        preprocess_cohort(one_study(tmp_path, src), tmp_path / "ct", (4.0, 4.0, 4.0), (6, 6, 6))
