"""Quality control of preprocessed CT: the per-dataset QC table and a montage PNG.

The QC table comes from :func:`ctsurv.imaging.cohort_cache.preprocess_cohort` (one row per
study: original shape, spacing, orientation code, HU range, status and flags such as
``not CT-like``, ``missing slices``, ``implausible spacing``, ``no spacing``, ``non-finite
values`` or ``constant output``).  A study is ``ok`` only when its preprocessed volume
varies: an all-constant volume (blank crop, wrong geometry) is ``bad``.  :func:`write_qc_table` stores it and
:func:`qc_montage` draws axial, coronal and sagittal mid-slices of a sample of the
preprocessed volumes, i.e. what the encoder sees, so that a person can spot a wrong
orientation or an empty crop at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .cache import load_preprocessed

QC_COLUMNS = [
    "study_id", "image", "status", "flags", "error", "format", "orientation",
    "shape_x", "shape_y", "shape_z", "spacing_x", "spacing_y", "spacing_z",
    "hu_min", "hu_max", "hu_p01", "hu_p99", "out_mean",
]


def write_qc_table(table, path: str | Path) -> None:
    """Write the QC table as parquet with a fixed column order (missing columns are null)."""
    import pandas as pd

    table = table.reindex(columns=QC_COLUMNS).copy()
    for col in ("shape_x", "shape_y", "shape_z"):
        table[col] = table[col].astype("Int64")
    for col in ("status", "flags", "error", "format", "orientation", "study_id", "image"):
        table[col] = table[col].astype("string")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.parquet")
    pd.DataFrame(table).to_parquet(tmp, index=False)
    tmp.replace(path)


def sample_studies(study_ids: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """A reproducible sample of at most ``n`` study ids, in their original order."""
    ids = list(study_ids)
    if len(ids) <= n:
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(pick)]


def qc_montage(cache_dir: str | Path, study_ids: Sequence[str], out_png: str | Path,
               spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Path:
    """Draw mid-slices of preprocessed volumes: one row per study, columns axial, coronal, sagittal.

    Views follow the radiological convention: patient right on the image's left, anterior
    up (axial), superior up (coronal, sagittal), anterior on the left (sagittal).  Pixel
    aspect follows ``spacing``.

    Args:
        cache_dir: the preprocessed cache.
        study_ids: studies to show (e.g. from :func:`sample_studies`); none gives a PNG
            saying that no study passed.
        out_png: the file to write.
        spacing: voxel size (x, y, z) of the cached volumes, for the aspect ratio.

    Returns:
        ``out_png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sx, sy, sz = (float(s) for s in spacing)
    rows = max(1, len(study_ids))
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for r, study in enumerate(study_ids):
        vol = load_preprocessed(cache_dir, study)
        x, y, z = (n // 2 for n in vol.shape)
        views = [
            ("axial", vol[::-1, :, z].T, sy / sx),  # x reversed: patient right on the left
            ("coronal", vol[::-1, y, :].T, sz / sx),
            ("sagittal", vol[x, ::-1, :].T, sz / sy),  # anterior on the left
        ]
        for c, (name, img, aspect) in enumerate(views):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{study} {name}" if c == 0 else name, fontsize=8)
    if not study_ids:
        axes[0, 1].text(0.5, 0.5, "no preprocessed study", ha="center", va="center")
        for ax in axes[0]:
            ax.axis("off")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
