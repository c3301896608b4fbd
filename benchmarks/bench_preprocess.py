"""Throughput of ctsurv's Merlin preprocessing against MONAI's chain, same volumes, same threads.

Writes synthetic chest-CT-sized volumes (default 512 x 512 x 300 at 0.7 x 0.7 x 1.0 mm,
int16, a body ellipse with lungs, bone and noise, in a non-RAS orientation), runs both
chains on the same files with the same number of threads (torch and SimpleITK), checks
that the outputs agree, and prints seconds per volume and the ratio.  Two measurements:

* ``file``: from the file on disk to the (X, Y, Z) array (reading included);
* ``memory``: the transforms only, on a volume already in memory.

Run: ``.venv/bin/python benchmarks/bench_preprocess.py [--n 3] [--threads 2] [--gz]``.
The target is a ratio of at least 3 (ctsurv at least 3 x MONAI's throughput).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch


def synthetic_ct(shape_xyz, spacing, seed):
    """int16 HU volume: air, an elliptic body, two lungs, a spine, noise (memory order z, y, x)."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape_xyz
    x = (np.arange(nx) - nx / 2) * spacing[0]
    y = (np.arange(ny) - ny / 2) * spacing[1]
    xx, yy = np.meshgrid(x, y, indexing="xy")  # (y, x)
    body = (xx / 160) ** 2 + (yy / 110) ** 2 < 1
    lungs = ((np.abs(xx) - 70) / 50) ** 2 + (yy / 80) ** 2 < 1
    spine = (xx / 15) ** 2 + ((yy - 70) / 15) ** 2 < 1
    plane = np.full((ny, nx), -1000.0)
    plane[body] = 40
    plane[lungs] = -850
    plane[spine] = 700
    vol = np.broadcast_to(plane, (nz, ny, nx)).astype(np.float32)
    vol = vol + rng.normal(0, 20, (nz, ny, nx)).astype(np.float32)
    return np.clip(vol, -1024, 3071).astype(np.int16)


def write_volume(path, shape_xyz, spacing, seed):
    img = sitk.GetImageFromArray(synthetic_ct(shape_xyz, spacing, seed))
    img.SetSpacing(spacing)
    img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, -1))  # LAI-like storage: flips on two axes
    img.SetOrigin((-180.0, 150.0, 200.0))
    sitk.WriteImage(img, str(path))


def monai_transforms(spacing, size):
    from monai.transforms import (CenterSpatialCropd, Compose, EnsureChannelFirstd, LoadImaged, Orientationd,
                                  ScaleIntensityRanged, Spacingd, SpatialPadd)

    tail = [
        Orientationd("image", axcodes="RAS", labels=None),
        Spacingd("image", pixdim=spacing, mode="bilinear"),
        ScaleIntensityRanged("image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        SpatialPadd("image", spatial_size=size),
        CenterSpatialCropd("image", roi_size=size),
    ]
    load = [LoadImaged("image", reader="NibabelReader"), EnsureChannelFirstd("image")]
    return Compose(load + tail), Compose(tail)


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="volumes (default 3)")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--in-spacing", type=float, nargs=3, default=[0.7, 0.7, 1.0])
    parser.add_argument("--spacing", type=float, nargs=3, default=[1.5, 1.5, 3.0])
    parser.add_argument("--size", type=int, nargs=3, default=[224, 224, 160])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs per volume")
    parser.add_argument("--gz", action="store_true", help="write .nii.gz (decompression then dominates both)")
    args = parser.parse_args()

    from monai.data import MetaTensor

    from ctsurv.imaging.io import read_ct
    from ctsurv.imaging.preprocess import preprocess_volume

    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    monai_file, monai_memory = monai_transforms(args.spacing, args.size)
    print(f"{args.n} volume(s) {args.shape} at {args.in_spacing} mm -> {args.size} at {args.spacing} mm; "
          f"{args.threads} thread(s) for torch and SimpleITK")

    totals = {k: 0.0 for k in ("ours_file", "monai_file", "ours_mem", "monai_mem")}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            path = Path(tmp) / f"ct{i}.nii{'.gz' if args.gz else ''}"
            write_volume(path, args.shape, args.in_spacing, seed=i)

            t_ours, ours = timed(lambda: preprocess_volume(read_ct(path), args.spacing, args.size, threads=args.threads).array, args.repeat)
            t_monai, ref = timed(lambda: monai_file({"image": str(path)})["image"][0].numpy(), args.repeat)
            worst = max(worst, float(np.abs(ours - ref).max()))
            assert ours.shape == ref.shape, (ours.shape, ref.shape)

            # memory: same loaded data for both (ours from read_ct, MONAI from its own loader)
            volume = read_ct(path)
            loaded = monai_file.transforms[1](monai_file.transforms[0]({"image": str(path)}))
            image = loaded["image"]
            t_ours_m, _ = timed(lambda: preprocess_volume(volume, args.spacing, args.size, threads=args.threads), args.repeat)
            t_monai_m, _ = timed(lambda: monai_memory({"image": MetaTensor(image.clone(), meta=image.meta)}), args.repeat)
            for k, v in zip(totals, (t_ours, t_monai, t_ours_m, t_monai_m)):
                totals[k] += v
            print(f"  volume {i}: file ours {t_ours:.3f} s, MONAI {t_monai:.3f} s | "
                  f"memory ours {t_ours_m:.3f} s, MONAI {t_monai_m:.3f} s")

    n = args.n
    print(f"max |ours - MONAI| = {worst:.2e} (target <= 1e-4)")
    for kind in ("file", "mem"):
        o, m = totals[f"ours_{kind}"] / n, totals[f"monai_{kind}"] / n
        print(f"{'from file' if kind == 'file' else 'in memory'}: ours {o:.3f} s/volume, MONAI {m:.3f} s/volume, "
              f"throughput ratio {m / o:.2f}x (target >= 3)")


if __name__ == "__main__":
    main()
