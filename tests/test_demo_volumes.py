"""Demo phantoms and NIfTI orientation: HU per tissue, exact re-orientation, grids."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctsurv.demo.anatomy import sample_anatomy
from ctsurv.demo.findings import paint_findings, sample_lung_findings
from ctsurv.demo.nifti import ORIENTATIONS, check_orientation, read_canonical, write_volume
from ctsurv.demo.phantom import LABEL, TISSUES, render


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_orientation_round_trip_is_exact(tmp_path, code):
    canonical = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    path = tmp_path / f"{code}.nii.gz"
    write_volume(path, canonical, (1.5, 2.0, 3.0), (-10.0, 5.0, 20.0), code)

    image = sitk.ReadImage(str(path))
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == code
    back, spacing, origin = read_canonical(path)
    np.testing.assert_array_equal(back, canonical)
    np.testing.assert_allclose(spacing, (1.5, 2.0, 3.0))
    np.testing.assert_allclose(origin, (-10.0, 5.0, 20.0), atol=1e-4)
    # The same voxel sits at the same physical point whatever the stored order.
    stored_index = image.TransformPhysicalPointToIndex((-10.0 + 1.5 * 4, 5.0 + 2.0 * 2, 20.0 + 3.0 * 6))
    assert image.GetPixel(stored_index) == canonical[4, 2, 6]


@pytest.mark.parametrize("bad", ["RAX", "RRS", "RA"])
def test_invalid_orientation_is_refused(bad):
    with pytest.raises(ValueError, match="orientation"):
        check_orientation(bad)


def test_rendered_hu_stays_in_each_tissue_range():
    rng = np.random.default_rng(3)
    anatomy = sample_anatomy(rng, fat_mm=12.0)
    findings = sample_lung_findings(rng, anatomy)
    paint_findings(rng, anatomy, findings)
    hu, labels = render(anatomy.scene, np.random.default_rng(4))

    assert hu.dtype == np.int16 and labels.dtype == np.uint8
    assert hu.shape == labels.shape == tuple(anatomy.scene.size)
    noise = anatomy.scene.noise_sd
    for tissue in ("air", "fat", "soft_tissue", "lung", "bone", "blood", "liver", "tumor"):
        label, lo, hi = TISSUES[tissue]
        values = hu[labels == label].astype(float)
        assert values.size > 0, tissue
        assert lo - 2 <= values.mean() <= hi + 2, (tissue, values.mean())
        # Noise (and tumour texture) spread values, a few sd at most.
        q_lo, q_hi = np.percentile(values, [0.5, 99.5])
        assert q_lo >= lo - 4 * (noise + 10) and q_hi <= hi + 4 * (noise + 10), tissue
    # Lungs are dark and bone bright: the contrast a CT encoder relies on.
    assert hu[labels == LABEL["lung"]].mean() < -700 < 300 < hu[labels == LABEL["bone"]].mean()


def test_grids_are_small_and_inside_the_requested_ranges():
    rng = np.random.default_rng(11)
    for _ in range(30):
        scene = sample_anatomy(rng, fat_mm=15.0).scene
        sx, sy, sz = scene.spacing
        nx, ny, nz = scene.size
        assert 2.8 <= sx <= 5.0 and sx == sy and 4.0 <= sz <= 8.0
        assert 64 <= nx <= 128 and 64 <= ny <= 128 and 40 <= nz <= 80
