"""Write a canonical (LPS-ordered) volume as NIfTI in any axis orientation.

The array is transposed and flipped and the direction cosines and origin are set to match,
so the physical anatomy is the same whatever the stored order: reading the file and
re-orienting it to LPS (``SimpleITK.DICOMOrient(image, "LPS")``) gives back the canonical
array exactly.  Orientation codes name where each stored axis *points* (nibabel's and
ITK's DICOMOrient convention): "RAS" means i towards the patient's right, j anterior,
k superior.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# letter -> (physical LPS axis, sign along it)
_LETTERS = {"L": (0, 1.0), "R": (0, -1.0), "P": (1, 1.0), "A": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}

#: Orientations the demo draws from: the common axial ones, and two that permute axes.
ORIENTATIONS = ("RAS", "LPS", "LAS", "RPS", "LPI", "RAI", "LAI", "ASR", "PLS")


def check_orientation(code: str) -> list[tuple[int, float]]:
    """Per stored axis, the (physical axis, sign) that ``code`` names; ValueError if invalid."""
    if len(code) != 3 or any(c not in _LETTERS for c in code):
        raise ValueError(f"orientation {code!r}: expected three letters from L/R, P/A, S/I")
    axes = [_LETTERS[c] for c in code]
    if sorted(a for a, _ in axes) != [0, 1, 2]:
        raise ValueError(f"orientation {code!r}: each of L/R, P/A, S/I must appear once")
    return axes


def reorient_canonical(
    array: np.ndarray, spacing, origin, code: str
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Store a canonical LPS array in orientation ``code``.

    Args:
        array: (nx, ny, nz) canonical array (axes along +x, +y, +z of LPS).
        spacing: (3,) canonical spacing in mm.
        origin: (3,) LPS position of canonical voxel (0, 0, 0).
        code: target orientation, e.g. "RAS".

    Returns:
        (stored array with axes in the new order, spacing, origin, direction) where
        direction is the row-major 3x3 matrix whose column d is stored axis d's direction.
    """
    axes = check_orientation(code)
    perm = [a for a, _ in axes]
    out = np.transpose(array, perm)
    direction = np.zeros((3, 3))
    new_origin = np.asarray(origin, dtype=float).copy()
    for d, (axis, sign) in enumerate(axes):
        direction[axis, d] = sign
        if sign < 0:
            out = np.flip(out, axis=d)
            new_origin[axis] += (array.shape[axis] - 1) * spacing[axis]
    new_spacing = tuple(float(spacing[a]) for a in perm)
    return np.ascontiguousarray(out), new_spacing, tuple(new_origin.tolist()), tuple(direction.ravel().tolist())


def write_volume(path: str | Path, array: np.ndarray, spacing, origin, code: str, compression_level: int = 1) -> None:
    """Write the canonical ``array`` to ``path`` (.nii.gz) stored in orientation ``code``.

    Level-1 gzip: the demo's volumes are small and speed matters more than size.
    """
    import SimpleITK as sitk

    stored, sp, org, direction = reorient_canonical(array, spacing, origin, code)
    image = sitk.GetImageFromArray(np.ascontiguousarray(stored.transpose(2, 1, 0)))
    image.SetSpacing(sp)
    image.SetOrigin(org)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=True, compressionLevel=compression_level)


def read_canonical(path: str | Path) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Read a volume and return it re-oriented to LPS as (array (nx, ny, nz), spacing, origin)."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), image.GetSpacing(), image.GetOrigin()
