"""``ctsurv preprocess-ct``: one CT volume through Merlin's chain, outside the workflow."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .checks import positive_float, positive_int

log = logging.getLogger("ctsurv.preprocess_ct")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess-ct",
        help="one CT volume through Merlin's preprocessing (what the image encoder sees)",
        description="Orient to RAS, resample (linear, MONAI's grid), clip HU to [-1000, 1000] -> [0, 1], "
        "pad and centre-crop. INPUT: a NIfTI/NRRD/MHA file or a folder of one DICOM series. OUTPUT: "
        ".nii.gz (geometry kept, to overlay on the CT) or .npy (float32, axes x->R, y->A, z->S as MONAI orders them).",
    )
    parser.add_argument("input", type=Path, help="image file or DICOM series folder")
    parser.add_argument("output", type=Path, help="output .nii.gz or .npy")
    parser.add_argument("--spacing", type=positive_float, nargs=3, metavar=("X", "Y", "Z"), default=[1.5, 1.5, 3.0],
                        help="target spacing in mm (default 1.5 1.5 3, the paper's)")
    parser.add_argument("--size", type=positive_int, nargs=3, metavar=("X", "Y", "Z"), default=[224, 224, 160],
                        help="output size in voxels after pad and centre crop (default 224 224 160)")
    parser.add_argument("--input-spacing", type=positive_float, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="override the header's voxel size (e.g. from CT-RATE's metadata)")
    parser.add_argument("--rescale", type=float, nargs=2, metavar=("SLOPE", "INTERCEPT"), default=None,
                        help="override the header's rescale to HU (e.g. from CT-RATE's metadata)")
    parser.add_argument("--no-ct-check", action="store_true", help="accept images whose values do not look like CT HU")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..imaging.io import read_ct, write_preprocessed
    from ..imaging.preprocess import preprocess_volume

    name = args.output.name
    if not (name.endswith(".npy") or name.endswith((".nii", ".nii.gz", ".nrrd", ".mha"))):
        raise DataError(f"{args.output}: OUTPUT must end in .nii.gz, .nii, .nrrd, .mha or .npy")
    from .checks import check_outputs

    check_outputs([("OUTPUT", args.output)], inputs=[args.input])
    volume = read_ct(args.input, spacing=args.input_spacing, rescale=args.rescale, check_ct=not args.no_ct_check)
    out = preprocess_volume(volume, args.spacing, args.size)
    write_preprocessed(out.array, out.affine, args.output)
    log.info("%s: %s %s -> %s %s", args.input, "x".join(map(str, volume.shape_xyz)), volume.orientation,
             "x".join(map(str, out.array.shape)), args.output)
    return 0
