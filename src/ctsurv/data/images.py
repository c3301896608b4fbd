"""Existence checks for CT images: a volume file or a DICOM series folder.

Only existence is checked here (ingest must stay fast on tens of thousands of studies);
reading and checking the voxels is the job of ``preprocess_ct``.
"""

from __future__ import annotations

from pathlib import Path

#: Single-file volume formats SimpleITK reads.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a usable image, or None when it is.

    A usable image is a NIfTI/NRRD/MHA(MHD) file, or a folder (a DICOM series) that holds
    at least one file.
    """
    path = Path(path)
    if path.is_dir():
        if not any(p.is_file() for p in path.iterdir()):
            return "is an empty folder (a DICOM series folder must hold the series' files)"
        return None
    if not path.exists():
        return "does not exist"
    name = path.name.lower()
    if not name.endswith(VOLUME_SUFFIXES):
        return f"is not a NIfTI, NRRD or MHA file nor a DICOM folder (expected a name ending in {', '.join(VOLUME_SUFFIXES)})"
    return None
