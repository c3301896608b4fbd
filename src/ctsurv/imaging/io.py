"""Reading CT volumes: NIfTI, NRRD, MHA files and DICOM series folders, with SimpleITK.

:func:`read_ct` returns a :class:`CtVolume`: the voxel array in SimpleITK's memory order
(z, y, x) as stored, its geometry as a RAS affine (the convention of NIfTI, nibabel and
MONAI), and a few facts for the QC table.  Every problem that makes a volume unusable is a
:class:`~ctsurv.errors.DataError` naming the study and what is wrong: an unreadable or
truncated file, a 2D image, a multi-component (RGB) image, a label map, values that are
not CT Hounsfield units, NaN or infinite voxels, a DICOM folder holding several series, a
series with a missing slice or uneven slice spacing, and impossible geometry: a voxel size
outside :data:`SPACING_RANGE_MM`, a NIfTI ``pixdim`` of 0 or a NRRD without spacing (ITK
silently takes 1 mm for both), unless the cohort's ``spacing_x/y/z`` override it.

Rescale slope and intercept: NIfTI's ``scl_slope``/``scl_inter`` and DICOM's Rescale
Slope/Intercept are applied by SimpleITK on reading.  A cohort override (CT-RATE's metadata
gives ``RescaleSlope``/``RescaleIntercept`` and the spacing because its NIfTI headers do
not carry them reliably) replaces the header: the stored values are taken raw and the
override's slope and intercept applied instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

# ITK's LPS world axes -> RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# A chest CT holds air (about -1000 HU) and soft tissue or bone (> 0 HU).
_AIR_HU = -500.0
_TISSUE_HU = 0.0
_LABEL_MAX_VALUES = 32
# Slice gaps larger than this many times the median spacing count as missing slices.
_GAP_FACTOR = 1.5
_SPACING_RTOL = 0.01
# A CT voxel is 0.1 to 10 mm along each axis; outside this range the header is wrong (e.g.
# metres or micrometres), and preprocessing would give a blank or one-voxel volume.
SPACING_RANGE_MM = (0.05, 50.0)


@dataclass
class CtVolume:
    """A CT volume as read from disk.

    Attributes:
        array: voxel values in memory order (z, y, x) (SimpleITK's ``GetArrayFromImage``
            order), dtype as stored (int16, float32, ...); HU after ``slope``/``intercept``.
        affine: (4, 4) float64 map from voxel index (i, j, k) = (x, y, z) to RAS mm.
        slope: multiply ``array`` by this, then add ``intercept``, to get HU.  1 and 0
            unless a cohort override replaced the header's rescale.
        intercept: see ``slope``.
        source: the file or folder read.
        study_id: the study, for messages.
        info: facts for the QC table (format, number of DICOM files, slice spacing checks).
    """

    array: np.ndarray
    affine: np.ndarray
    slope: float = 1.0
    intercept: float = 0.0
    source: str = ""
    study_id: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Voxels along (i, j, k) = (x, y, z) of the stored grid."""
        return tuple(int(n) for n in self.array.shape[::-1])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (i, j, k): the affine's column norms."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes of (i, j, k) in the RAS convention, e.g. ``"LPS"`` or ``"RAS"``."""
        import nibabel.orientations as nio

        return "".join(nio.aff2axcodes(self.affine))


class BadImageError(DataError):
    """An image that cannot be used; ``flag`` names the problem for the QC table.

    Args:
        flag: short problem name, e.g. ``"missing slices"``, ``"not CT-like"``.
        message: the full message naming the study, the file and the fix.
    """

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


def _where(study_id: str, path: Path | str) -> str:
    return f"study '{study_id}' ({path})" if study_id else str(path)


def affine_from_sitk(image) -> np.ndarray:
    """RAS affine (4, 4) of a SimpleITK image: voxel (i, j, k) -> RAS mm."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    affine[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ affine


def sitk_geometry_from_affine(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(spacing, origin, direction) for SimpleITK from a RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return tuple(spacing.tolist()), tuple(lps[:3, 3].tolist()), tuple(direction.ravel().tolist())


def _dicom_files(folder: Path, study_id: str) -> list[str]:
    import SimpleITK as sitk

    where = _where(study_id, folder)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise BadImageError("no DICOM series", f"{where}: no DICOM series found in the folder; point 'image' at a NIfTI/NRRD/MHA file or a folder of one DICOM series")
    if len(series) > 1:
        raise BadImageError(
            "several series",
            f"{where}: the folder holds {len(series)} DICOM series ({', '.join(series)}); "
            "put each series in its own folder and list it as its own study"
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def check_slice_positions(positions: np.ndarray, where: str) -> float:
    """Check that slice positions (mm along the slice normal) are evenly spaced.

    Args:
        positions: (N,) positions of the slices, in any order.
        where: the study and folder, for messages.

    Returns:
        The slice spacing in mm (median gap).

    Raises:
        DataError: duplicate slices, a missing slice (a gap over 1.5 x the median gap) or
            uneven spacing (gaps differing by more than 1 %).
    """
    pos = np.sort(np.asarray(positions, dtype=np.float64))
    if len(pos) < 2:
        raise BadImageError("2D image", f"{where}: only {len(pos)} DICOM slice; a 3D CT series needs several")
    gaps = np.diff(pos)
    step = float(np.median(gaps))
    if step <= 1e-6 or np.any(gaps <= 1e-3 * step):
        raise BadImageError("duplicate slices", f"{where}: two DICOM slices share one position; the folder mixes acquisitions or holds duplicates")
    big = np.flatnonzero(gaps > _GAP_FACTOR * step)
    if big.size:
        i = int(big[0])
        missing = int(round(gaps[i] / step)) - 1
        raise BadImageError(
            "missing slices",
            f"{where}: missing slices: gap of {gaps[i]:.3g} mm between slice positions {pos[i]:.3g} and "
            f"{pos[i + 1]:.3g} mm where the spacing is {step:.3g} mm (about {missing} slice(s) missing); "
            "re-export the complete series"
        )
    if np.any(np.abs(gaps - step) > _SPACING_RTOL * step):
        raise BadImageError(
            "uneven spacing",
            f"{where}: uneven slice spacing ({gaps.min():.4g} to {gaps.max():.4g} mm); "
            "resample the series to uniform spacing before use"
        )
    return step


def _read_dicom_series(folder: Path, study_id: str):
    import SimpleITK as sitk

    where = _where(study_id, folder)
    files = _dicom_files(folder, study_id)
    positions = []
    reader = sitk.ImageFileReader()
    for name in files:
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            raise BadImageError("unreadable", f"{where}: cannot read DICOM file {Path(name).name}: {_first_line(err)}") from None
        try:
            ipp = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
            iop = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
        except (RuntimeError, ValueError):
            raise BadImageError("unreadable", f"{where}: DICOM file {Path(name).name} lacks Image Position/Orientation (Patient)") from None
        positions.append(float(np.dot(np.cross(iop[:3], iop[3:]), ipp)))
    step = check_slice_positions(np.array(positions), where)
    series = sitk.ImageSeriesReader()
    series.SetFileNames(files)
    try:
        image = series.Execute()
    except RuntimeError as err:
        raise BadImageError("unreadable", f"{where}: cannot read the DICOM series: {_first_line(err)}") from None
    spacing = list(image.GetSpacing())
    spacing[2] = step
    image.SetSpacing(spacing)
    return image, {"format": "dicom", "n_files": len(files)}


def _first_line(err: Exception) -> str:
    # ITK messages start with the source location; keep the lines that say what happened.
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    said = [ln.split("ERROR:", 1)[-1].strip() for ln in lines if "ERROR" in ln or "expected" in ln or "read" in ln]
    return " ".join(said or lines[-1:]) or type(err).__name__


def _check_nifti_complete(path: Path, where: str) -> tuple[float, ...] | None:
    """ITK reads a truncated NIfTI without complaint (the missing voxels become garbage):
    compare the data size the header promises with the file (or gzip trailer) size.

    Returns:
        The header's voxel sizes ``pixdim[1:4]`` as stored (None for other formats): ITK
        and nibabel both replace a 0 by 1 mm without a word.
    """
    import zlib

    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        # The header as stored (nib.load's copy resets the data offset); check=False keeps
        # a pixdim of 0 instead of "fixing" it to 1.
        with nib.openers.ImageOpener(str(path)) as fh:
            header = nib.load(str(path)).header_class.from_fileobj(fh, check=False)
        expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * int(header["bitpix"]) // 8
        pixdim = tuple(float(v) for v in header["pixdim"][1:4])
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, KeyError, zlib.error) as err:
        raise BadImageError("unreadable", f"{where}: cannot read the NIfTI header (corrupt or truncated): {err}") from None
    if name.endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            actual = int.from_bytes(fh.read(4), "little")  # gzip ISIZE: uncompressed size mod 2**32
        complete = actual == expected % 2**32
    else:
        actual = path.stat().st_size
        complete = actual >= expected
    if not complete:
        raise BadImageError(
            "unreadable",
            f"{where}: truncated or corrupt NIfTI: the header promises {expected} bytes, the file holds "
            f"{actual}{' (gzip size field)' if name.endswith('.gz') else ''}; re-copy or re-export the file",
        )
    return pixdim


def _nrrd_has_spacing(path: Path) -> bool:
    """Whether a NRRD header gives the voxel size (``space directions`` or ``spacings``)."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    header = head.split(b"\n\n", 1)[0].replace(b"\r", b"")
    fields = {line.split(b":", 1)[0].strip().lower() for line in header.split(b"\n")[1:] if b":" in line}
    return b"space directions" in fields or b"spacings" in fields


def _read_file(path: Path, study_id: str):
    import SimpleITK as sitk

    where = _where(study_id, path)
    pixdim = _check_nifti_complete(path, where)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise BadImageError("unreadable", f"{where}: cannot read the image (corrupt, truncated or not an image file): {_first_line(err)}") from None
    info = {"format": "".join(path.suffixes[-2:]).lower() or path.suffix.lower()}
    if pixdim is not None and not all(math.isfinite(p) and p != 0 for p in pixdim):
        info["no_spacing"] = f"the NIfTI header's voxel size (pixdim) is {'x'.join(f'{p:g}' for p in pixdim)} mm"
    elif path.name.lower().endswith(".nrrd") and not _nrrd_has_spacing(path):
        info["no_spacing"] = "the NRRD header has no spacing (no 'space directions' or 'spacings' field)"
    if pixdim is not None and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        # ITK's NIfTI reader turns NaN voxels into 0 without a word: count them in the file.
        import nibabel as nib

        raw = np.asanyarray(nib.load(str(path)).dataobj)
        info["non_finite_voxels"] = int(raw.size - np.count_nonzero(np.isfinite(raw)))
    return image, info


def _header_rescale(image) -> tuple[float, float]:
    # NIfTI scl_slope / scl_inter as SimpleITK reports them; slope 0 means "not set".
    try:
        slope = float(image.GetMetaData("scl_slope")) if image.HasMetaDataKey("scl_slope") else 0.0
        inter = float(image.GetMetaData("scl_inter")) if image.HasMetaDataKey("scl_inter") else 0.0
    except ValueError:
        return 1.0, 0.0
    if slope == 0.0 or not math.isfinite(slope):
        return 1.0, 0.0
    return slope, inter


def read_ct(
    path: str | Path,
    study_id: str = "",
    spacing: tuple[float, float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    check_ct: bool = True,
) -> CtVolume:
    """Read one CT volume and check that it is a usable 3D CT.

    Args:
        path: a NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD file, or a folder holding one
            DICOM series.
        study_id: named in error messages.
        spacing: override of the voxel size (x, y, z) in mm (cohort ``spacing_*`` columns,
            e.g. from CT-RATE's metadata); None keeps the header's.
        rescale: override (slope, intercept) to HU (cohort ``rescale_*`` columns); None
            keeps the header's (already applied by SimpleITK).
        check_ct: refuse label maps and images whose values are not Hounsfield units.

    Returns:
        The volume; HU = ``array * slope + intercept``.

    Raises:
        DataError: the file is missing, unreadable, not 3D, multi-component, a label map,
            not CT-like, has NaN voxels or an impossible voxel size, or (DICOM) several
            series / missing slices / uneven spacing.
    """
    import SimpleITK as sitk

    path = Path(path)
    where = _where(study_id, path)
    if not path.exists():
        raise BadImageError("not found", f"{where}: image not found; check the cohort table's 'image' column")
    image, info = _read_dicom_series(path, study_id) if path.is_dir() else _read_file(path, study_id)

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise BadImageError(
            "multi-component",
            f"{where}: {image.GetNumberOfComponentsPerPixel()}-component (RGB or vector) image; "
            "a CT volume has one grey value per voxel"
        )
    size = image.GetSize()
    if image.GetDimension() > 3:
        raise BadImageError(
            f"{image.GetDimension()}D image",
            f"{where}: {image.GetDimension()}D image (size {'x'.join(map(str, size))}), e.g. a time series or several "
            "volumes in one file; a CT volume has 3 axes: save each volume to its own file",
        )
    if image.GetDimension() != 3 or min(size) < 2:
        raise BadImageError("2D image", f"{where}: 2D image (size {'x'.join(map(str, size))}); a CT volume needs 3 axes of at least 2 voxels")

    slope, intercept = 1.0, 0.0
    if spacing is not None:
        if len(spacing) != 3 or not all(s is not None and math.isfinite(s) and s > 0 for s in spacing):
            raise BadImageError("bad override", f"{where}: spacing override {spacing} must be three positive numbers (mm)")
        image.SetSpacing([float(s) for s in spacing])
    elif "no_spacing" in info:
        raise BadImageError(
            "no spacing",
            f"{where}: {info['no_spacing']}; the voxel size is unknown (it would be taken as 1 mm). "
            "Give it in the cohort table's spacing_x, spacing_y, spacing_z columns or fix the header",
        )
    _check_spacing(image.GetSpacing(), where, override=spacing is not None)
    if rescale is not None:
        slope, intercept = (float(v) for v in rescale)
        if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
            raise BadImageError("bad override", f"{where}: rescale override (slope {slope}, intercept {intercept}) must be finite with slope != 0")
        h_slope, h_inter = _header_rescale(image)
        if (h_slope, h_inter) != (1.0, 0.0):
            # SimpleITK already applied the header's rescale: undo it before the override.
            slope, intercept = slope / h_slope, intercept - slope * h_inter / h_slope

    array = sitk.GetArrayFromImage(image)
    volume = CtVolume(array=array, affine=affine_from_sitk(image), slope=slope, intercept=intercept,
                      source=str(path), study_id=study_id, info=info)
    if check_ct:
        check_ct_like(volume)
    return volume


def _check_spacing(spacing, where: str, override: bool) -> None:
    lo, hi = SPACING_RANGE_MM
    if all(lo <= s <= hi for s in spacing):
        return
    shown = " x ".join(f"{s:g}" for s in spacing)
    source = "the cohort's spacing override" if override else "the header's voxel spacing"
    raise BadImageError(
        "implausible spacing",
        f"{where}: {source} {shown} mm is not a CT's ({lo:g} to {hi:g} mm per axis); preprocessing would "
        "give a blank volume. Give the real voxel size in the cohort table's spacing_x, spacing_y, spacing_z "
        "columns or fix the header",
    )


def hu_summary(volume: CtVolume, stride: int = 4) -> dict[str, float]:
    """HU range of a volume: exact min and max, percentiles on a subsample.

    Args:
        volume: the volume.
        stride: percentiles use every ``stride``-th voxel along each axis (speed).

    Returns:
        ``hu_min``, ``hu_max``, ``hu_p01``, ``hu_p99`` (HU) and ``n_values_sample`` (distinct
        values among at most 200,000 sampled voxels; a label map has few).
    """
    sample = volume.array[::stride, ::stride, ::stride].ravel()
    few = sample[:: max(1, sample.size // 200_000)]
    p1, p99 = np.percentile(sample, [1, 99])
    to_hu = lambda v: float(v) * volume.slope + volume.intercept  # noqa: E731
    lo, hi = sorted((to_hu(volume.array.min()), to_hu(volume.array.max())))
    p1, p99 = sorted((to_hu(p1), to_hu(p99)))
    return {"hu_min": lo, "hu_max": hi, "hu_p01": p1, "hu_p99": p99, "n_values_sample": int(np.unique(few).size)}


def check_ct_like(volume: CtVolume, summary: dict[str, float] | None = None) -> dict[str, float]:
    """Refuse label maps and non-CT intensities; return the HU summary.

    A CT of the chest holds air (about -1000 HU) and tissue (above 0 HU).  A label map has
    a handful of integer values; an MR or a photograph has no negative values.

    Raises:
        DataError: naming the study and the values found.
    """
    where = _where(volume.study_id, volume.source)
    bad = int(volume.info.get("non_finite_voxels", 0))
    if np.issubdtype(volume.array.dtype, np.floating):
        bad = max(bad, int(volume.array.size - np.count_nonzero(np.isfinite(volume.array))))
    if bad:
        raise BadImageError(
            "non-finite values",
            f"{where}: {bad} voxel(s) are NaN or infinite; a CT holds finite Hounsfield units. "
            "Re-export the image (or fill the missing voxels) before use",
        )
    s = summary or hu_summary(volume)
    integral = np.issubdtype(volume.array.dtype, np.integer) or volume.array.dtype == np.bool_
    if integral and s["n_values_sample"] <= _LABEL_MAX_VALUES and s["hu_max"] - s["hu_min"] <= 1000:
        raise BadImageError(
            "label map",
            f"{where}: looks like a label map ({s['n_values_sample']} distinct values, {s['hu_min']:g} to {s['hu_max']:g}), "
            "not a CT volume; point 'image' at the CT itself"
        )
    if s["hu_p01"] > _AIR_HU or s["hu_max"] < _TISSUE_HU:
        raise BadImageError(
            "not CT-like",
            f"{where}: not CT-like: values {s['hu_min']:g} to {s['hu_max']:g} (1st percentile {s['hu_p01']:g}) "
            "are not Hounsfield units of a chest CT (air near -1000, tissue above 0); is it an MR or a "
            "CT without rescale slope/intercept? Set rescale_slope/rescale_intercept in the cohort if so"
        )
    return s


def write_preprocessed(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a preprocessed (X, Y, Z) float32 volume as ``.npy`` or as NIfTI with its geometry.

    Args:
        array: float32 (X, Y, Z), axes x -> R, y -> A, z -> S.
        affine: (4, 4) RAS affine of ``array``.
        path: ``.npy`` (the array as is) or ``.nii``/``.nii.gz``/``.nrrd``/``.mha`` (any
            format SimpleITK writes; the geometry is kept, so viewers overlay it on the
            original CT).

    Returns:
        ``path``.
    """
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, np.asarray(array, dtype=np.float32), allow_pickle=False)
        return path
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype=np.float32).transpose(2, 1, 0)))
    spacing, origin, direction = sitk_geometry_from_affine(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    try:
        sitk.WriteImage(image, str(path))
    except RuntimeError as err:
        raise DataError(f"{path}: cannot write ({_first_line(err)}); use .npy, .nii.gz, .nrrd or .mha") from None
    return path
