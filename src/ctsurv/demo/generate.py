"""Write the demo datasets: NIfTI volumes, label maps, manifest, gold answers, truth, README.

Layout of ``{outdir}/{dataset}/``::

    manifest.csv            study_id, patient_id, image, report, time, event, clinical columns
    gold_answers.parquet    study_id, question_id, answer, present, size_mm, location
    truth.parquet           study_id, patient_id, log_hazard and its parts, latent fields
    phenotypes.csv          study_id and 0/1 EHR-like codes (see ctsurv.demo.phenotypes)
    images/<study_id>.nii.gz  int16 HU, stored in varied orientations and spacings
    labels/<study_id>.nii.gz  uint8 tissue labels on the same grid (ids in README.md)
    README.md

A dataset is written to a hidden sibling folder first and moved into place at the end, so
an interrupted run never leaves a half-written dataset behind.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .cohort import CLINICAL_COLUMNS, DEMO_KINDS, FOLLOW_UP, StudyPlan, gold_rows, plan_dataset
from .findings import PretrainMix
from .gold import gold_frame
from .nifti import write_volume
from .phantom import render
from .phenotypes import phenotype_frame
from .readme import dataset_readme

log = logging.getLogger(__name__)

MANIFEST_BASE = ["study_id", "patient_id", "image", "report", "time", "event"]


def _render_task(task) -> None:
    """Render one scene and write its volume (and label map); runs in a worker process."""
    scene, orientation, seed, image_path, label_path = task
    hu, labels = render(scene, np.random.default_rng(seed))
    write_volume(image_path, hu, scene.spacing, scene.origin, orientation)
    if label_path is not None:
        write_volume(label_path, labels, scene.spacing, scene.origin, orientation)


def manifest_frame(plans: list[StudyPlan], kind: str) -> pd.DataFrame:
    """The manifest table of a dataset (image paths relative to its folder)."""
    rows = []
    for p in plans:
        row = {
            "study_id": p.study_id,
            "patient_id": p.patient_id,
            "image": f"images/{p.study_id}.nii.gz",
            "report": p.report,
            "time": p.truth.get("time"),
            "event": p.truth.get("event"),
        }
        row.update({c: p.clinical[c] for c in CLINICAL_COLUMNS[kind]})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=MANIFEST_BASE + CLINICAL_COLUMNS[kind])
    frame["time"] = frame["time"].astype("float64")
    frame["event"] = frame["event"].astype("Int64")
    return frame


def truth_frame(plans: list[StudyPlan]) -> pd.DataFrame:
    return pd.DataFrame([p.truth for p in plans])


def generate_dataset(
    name: str,
    outdir: str | Path,
    *,
    seed: int,
    n: int,
    workers: int = 2,
    write_labels: bool = True,
    progress: bool = True,
    pool: ProcessPoolExecutor | None = None,
    mix: PretrainMix | None = None,
) -> Path:
    """Generate one demo dataset into ``{outdir}/{name}/``.

    Args:
        name: "demo_pretrain", "demo_lung" or "demo_pe".
        outdir: parent folder.
        seed: generator seed (same seed and n: byte-identical tables and identical voxels).
        n: studies (pretrain) or patients (survival datasets).
        workers: processes rendering volumes (1: in this process).
        write_labels: also write the tissue label maps.
        progress: show a tqdm bar.
        pool: an executor to render with (``generate_demo`` shares one over the datasets);
            None: start one of ``workers`` processes when ``workers`` > 1.
        mix: findings mix of a "demo_pretrain" dataset (None: the demo's; the encoder corpus
            uses :data:`ctsurv.demo.findings.ENCODER_CORPUS_MIX`).

    Returns:
        the dataset folder.
    """
    if name not in DEMO_KINDS:
        raise ConfigError(f"dataset '{name}': the demo adapter generates only {sorted(DEMO_KINDS)}; rename the dataset or change its adapter")
    kind = DEMO_KINDS[name]
    final = Path(outdir) / name
    work = Path(outdir) / f".{name}.partial"
    if work.exists():
        shutil.rmtree(work)
    (work / "images").mkdir(parents=True)
    if write_labels:
        (work / "labels").mkdir()

    plans = plan_dataset(kind, n, seed, mix)
    log.info("%s: planned %d studies of %d patients", name, len(plans), len({p.patient_id for p in plans}))
    tasks = [
        (
            p.scene,
            p.orientation,
            p.render_seed,
            str(work / "images" / f"{p.study_id}.nii.gz"),
            str(work / "labels" / f"{p.study_id}.nii.gz") if write_labels else None,
        )
        for p in plans
    ]
    _run_tasks(tasks, workers, progress, desc=name, pool=pool)

    manifest = manifest_frame(plans, kind)
    manifest.to_csv(work / "manifest.csv", index=False)
    gold_frame(gold_rows(plans)).to_parquet(work / "gold_answers.parquet", index=False)
    truth = truth_frame(plans)
    truth.to_parquet(work / "truth.parquet", index=False)
    phenotype_frame(truth).to_csv(work / "phenotypes.csv", index=False)
    (work / "README.md").write_text(dataset_readme(name, kind, manifest, truth, seed), encoding="utf-8")

    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    if kind in FOLLOW_UP:
        log.info("%s: %d patients, %.1f%% censored", name, len(manifest), 100 * (1 - manifest["event"].mean()))
    return final


def _start_pool(workers: int) -> ProcessPoolExecutor:
    # Workers inherit SimpleITK already imported instead of importing it each.
    import SimpleITK  # noqa: F401

    return ProcessPoolExecutor(max_workers=workers)


def _run_tasks(tasks: list, workers: int, progress: bool, desc: str, pool: ProcessPoolExecutor | None = None) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=f"{desc} volumes", unit="vol", disable=not progress)
    if pool is None and workers <= 1:
        for task in tasks:
            _render_task(task)
            bar.update()
    else:
        own = pool is None
        pool = pool or _start_pool(workers)
        try:
            for _ in pool.map(_render_task, tasks, chunksize=2):
                bar.update()
        finally:
            if own:
                pool.shutdown()
    bar.close()


def generate_demo(
    outdir: str | Path,
    seed: int = 7,
    n_pretrain: int = 600,
    n_lung: int = 500,
    n_pe: int = 1000,
    *,
    workers: int = 2,
    write_labels: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate demo_pretrain, demo_lung and demo_pe under ``outdir``; return their folders.

    The default sizes are config/config.yaml's: enough events in the survival cohorts' test
    splits (about 70 in demo_pe, 78 in demo_lung) to tell a 0.05 c-index difference.
    """
    sizes = {"demo_pretrain": n_pretrain, "demo_lung": n_lung, "demo_pe": n_pe}
    pool = _start_pool(workers) if workers > 1 else None
    try:
        return {
            name: generate_dataset(name, outdir, seed=seed, n=n, workers=workers, write_labels=write_labels, progress=progress, pool=pool)
            for name, n in sizes.items()
        }
    finally:
        if pool is not None:
            pool.shutdown()


