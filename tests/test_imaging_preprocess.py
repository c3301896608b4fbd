"""Merlin's preprocessing chain against MONAI's implementation, and its grid rules."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctsurv.imaging.io import read_ct
from ctsurv.imaging.preprocess import monai_output_grid, orientation_to_ras, preprocess_volume


def write_ct(path, shape_zyx, spacing, direction, origin=(10.5, -20.25, 30.0), seed=0):
    """A noisy int16 CT-like volume with sharp edges (air rows, bright bone slab)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(-200, 400, shape_zyx)
    a[:, :2, :] = -1000
    a[..., -2:] += 2500  # above the clip: interpolation before clipping matters
    img = sitk.GetImageFromArray(np.clip(a, -1024, 3000).astype(np.int16))
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def monai_chain(path, spacing, size):
    monai_t = pytest.importorskip("monai.transforms")
    pytest.importorskip("nibabel")
    chain = monai_t.Compose([
        monai_t.LoadImaged("image", reader="NibabelReader"),
        monai_t.EnsureChannelFirstd("image"),
        monai_t.Orientationd("image", axcodes="RAS", labels=None),
        monai_t.Spacingd("image", pixdim=spacing, mode="bilinear"),
        monai_t.ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        monai_t.SpatialPadd("image", spatial_size=size),
        monai_t.CenterSpatialCropd("image", roi_size=size),
    ])
    out = chain({"image": str(path)})["image"]
    return out[0].numpy(), np.asarray(out.affine, dtype=np.float64)


OBLIQUE = tuple(np.array([[0.98480775, -0.17364818, 0], [0.17364818, 0.98480775, 0], [0, 0, 1]]).ravel())

CASES = {
    # anisotropic, LPS storage (SimpleITK's identity), odd sizes, pad on every axis
    "lps-pad": ((21, 30, 27), (0.7, 0.9, 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), (1.5, 1.5, 3.0), (16, 24, 20)),
    # permuted and flipped axes, mixed pad / crop
    "permuted": ((17, 33, 25), (0.8, 0.6, 1.7), (0, 1, 0, -1, 0, 0, 0, 0, -1), (1.5, 1.2, 3.0), (40, 12, 9)),
    # strong downsampling: the last output voxel lies past the last input voxel (border replicate)
    "border": ((11, 50, 61), (1.1, 0.9, 1.0), (-1, 0, 0, 0, 0, 1, 0, -1, 0), (4.0, 4.0, 4.0), (7, 9, 11)),
    # oblique (10 degrees in-plane): orientation picks the nearest axes
    "oblique": ((13, 24, 20), (0.9, 0.9, 2.0), OBLIQUE, (1.5, 1.5, 2.5), (15, 15, 11)),
    # larger than 224 x 224 x 160 after resampling: the centre crop acts on every axis
    "crop-224": ((116, 120, 115), (2.0, 1.9, 2.0), (0, 0, 1, 1, 0, 0, 0, 1, 0), (1.0, 0.95, 1.0), (224, 224, 160)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_monai_chain(tmp_path, name):
    shape, spacing, direction, target, size = CASES[name]
    path = write_ct(tmp_path / f"{name}.nii.gz", shape, spacing, direction, seed=len(name))
    ours = preprocess_volume(read_ct(path, check_ct=False), target, size)
    ref, ref_affine = monai_chain(path, target, size)

    assert ours.array.dtype == np.float32
    assert ours.array.shape == ref.shape == tuple(size)
    np.testing.assert_allclose(ours.affine, ref_affine, atol=1e-4)
    assert np.abs(ours.array - ref).max() <= 1e-4
    assert ours.array.min() >= 0.0 and ours.array.max() <= 1.0


def test_crop_case_is_larger_than_output_before_crop(tmp_path):
    shape, spacing, direction, target, size = CASES["crop-224"]
    vol = read_ct(write_ct(tmp_path / "big.nii.gz", shape, spacing, direction), check_ct=False)
    ornt, oriented_affine = orientation_to_ras(vol.affine, vol.shape_xyz)
    oriented_shape = [vol.shape_xyz[int(np.flatnonzero(ornt[:, 0] == a)[0])] for a in range(3)]
    grid = monai_output_grid(oriented_affine, oriented_shape, target)[0]
    assert np.all(grid > np.array(size)), grid


def test_output_grid_is_monai_rule():
    """First output centre on the first input centre; round_half_even((n-1) s_in / s_out + 1)."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [5.0, -3.0, 7.5]
    # n = 6, 4, 8 at 1 mm -> 2 mm: 3.5 -> 4 (even), 2.5 -> 2 (even), 4.5 -> 4 (even)
    shape, out_affine, xform = monai_output_grid(affine, (6, 4, 8), (2.0, 2.0, 2.0))
    assert shape.tolist() == [4, 2, 4]
    np.testing.assert_allclose(out_affine[:3, 3], affine[:3, 3])
    np.testing.assert_allclose(np.diag(xform)[:3], [2.0, 2.0, 2.0])
    # within 1e-3 mm of the target an axis keeps its own spacing, as in MONAI
    shape, _, xform = monai_output_grid(np.diag([1.5004, 1.0, 1.0, 1.0]), (10, 10, 10), (1.5, 1.0, 1.0))
    assert xform[0, 0] == pytest.approx(1.0)
    assert shape.tolist() == [10, 10, 10]


def test_orientation_puts_patient_right_at_high_x(tmp_path):
    """A bright blob on the patient's left and anterior ends up at low x and high y."""
    a = np.full((20, 30, 30), -1000, dtype=np.int16)  # (z, y, x) in LPS storage
    a[8:12, 2:6, 24:28] = 1000  # high i = patient left, low j = anterior
    img = sitk.GetImageFromArray(a)  # identity direction: i -> L, j -> P, k -> S
    sitk.WriteImage(img, str(tmp_path / "blob.nii.gz"))
    out = preprocess_volume(read_ct(tmp_path / "blob.nii.gz", check_ct=False), (1, 1, 1), (30, 30, 20)).array
    x, y, z = np.unravel_index(np.argmax(out), out.shape)
    assert x < 6 and y > 23 and 8 <= z < 12
    assert out[x, y, z] == pytest.approx(1.0)
    assert out.min() == 0.0


def test_rescale_and_clip(tmp_path):
    """HU = stored * slope + intercept, then [-1000, 1000] -> [0, 1]; padding is 0."""
    a = np.full((4, 5, 6), 1024, dtype=np.int16)  # 0 HU with intercept -1024
    img = sitk.GetImageFromArray(a)
    sitk.WriteImage(img, str(tmp_path / "raw.nrrd"))
    vol = read_ct(tmp_path / "raw.nrrd", rescale=(1.0, -1024.0), check_ct=False)
    out = preprocess_volume(vol, (1, 1, 1), (8, 5, 4)).array
    assert out.shape == (8, 5, 4)
    np.testing.assert_allclose(out[1:7], 0.5, atol=1e-7)
    assert np.all(out[0] == 0) and np.all(out[7] == 0)
