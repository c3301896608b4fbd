"""Plan the studies of one demo dataset: scene, report, gold answers, clinical row, truth.

Planning is cheap and sequential; every patient draws from its own generator, spawned
from ``numpy.random.SeedSequence([seed, dataset index])``, so a dataset depends only on
the seed and its size, never on the worker count.  Rendering the planned scenes is
:mod:`ctsurv.demo.generate`'s job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .anatomy import sample_anatomy
from .findings import (
    CLOT_WEIGHT,
    Findings,
    m_category,
    n_category,
    paint_findings,
    sample_clots,
    sample_lung_findings,
    sample_pe_findings,
    PretrainMix,
    sample_pretrain_findings,
    stage_group,
    t_category,
)
from .gold import QUESTION_IDS, GoldAnswer
from .hazards import lung_clinical, lung_log_hazard, pe_log_hazard, pe_vitals, sample_fat_mm, sample_follow_up
from .nifti import ORIENTATIONS
from .phantom import Scene
from .reports import write_report

#: demo dataset name -> generator kind
DEMO_KINDS = {"demo_pretrain": "pretrain", "demo_lung": "lung", "demo_pe": "pe"}
#: clinical columns of each kind, in the order of config/config.yaml
CLINICAL_COLUMNS = {
    "pretrain": ["age", "sex"],
    "lung": ["age", "sex", "smoking", "stage", "t_stage", "n_stage", "m_stage"],
    "pe": ["age", "sex", "pe_positive", "pe_acute", "subsegmental_only", "temperature", "respiratory_rate", "mean_arterial_pressure", "pulse"],
}
#: target censored fractions and median event time (days) of the survival kinds
#: (embolism: 65%, so that 1,000 patients put about 70 events in a 20% test split)
FOLLOW_UP = {"lung": (0.225, 600.0), "pe": (0.65, 2500.0)}
_KIND_INDEX = {"pretrain": 0, "lung": 1, "pe": 2}
_HAZARD_KEYS = ("log_hazard", "log_hazard_clinical", "log_hazard_findings", "log_hazard_image_only")


@dataclass
class StudyPlan:
    """Everything about one study except its voxels.

    Attributes:
        study_id, patient_id: identifiers.
        scene: the phantom to render.
        orientation: stored axis order of the NIfTI file, e.g. "RAS".
        render_seed: seed of the voxel noise.
        report: the report text.
        gold: gold answer per question id.
        clinical: the clinical columns.
        truth: latent fields and hazard parts (``truth.parquet``).
    """

    study_id: str
    patient_id: str
    scene: Scene
    orientation: str
    render_seed: int
    report: str
    gold: dict[str, GoldAnswer]
    clinical: dict
    truth: dict


def _truth_fields(f: Findings, scene: Scene, orientation: str) -> dict:
    t = f.tumor
    return {
        "tumor_lobe": t.lobe if t else None,
        "tumor_size_mm": float(t.size_mm) if t else None,
        "tumor_center_x": t.center[0] if t else None,
        "tumor_center_y": t.center[1] if t else None,
        "tumor_center_z": t.center[2] if t else None,
        "necrosis_fraction": float(t.necrosis) if t else 0.0,
        "vessel_invasion": t.vessel if t else None,
        "node_stations": ";".join(n.station for n in f.nodes),
        "max_node_mm": float(max((n.short_mm for n in f.nodes), default=0)),
        "effusion": f.effusion.side if f.effusion else None,
        "effusion_depth_mm": float(f.effusion.depth_mm) if f.effusion else 0.0,
        "metastasis_sites": ";".join(m.organ for m in f.metastases),
        "bone_lesions": ";".join(f"{b.level}:{b.kind}" for b in f.bone_lesions),
        "clot_vessels": ";".join(c.vessel for c in f.clots),
        "clot_burden": f.clot_burden,
        "rv_lv_ratio": float(f.rv_lv_ratio),
        "emphysema_fraction": float(f.emphysema_fraction),
        "fat_mm": float(f.fat_mm),
        "cardiomegaly": bool(f.cardiomegaly),
        "consolidation": f.consolidation,
        "coronary_calcification": bool(f.coronary_calcification),
        "orientation": orientation,
        "spacing_x": scene.spacing[0],
        "spacing_y": scene.spacing[1],
        "spacing_z": scene.spacing[2],
        "size_x": scene.size[0],
        "size_y": scene.size[1],
        "size_z": scene.size[2],
    }


def _generators(seed: int, kind: str, n: int) -> tuple[list[np.random.Generator], np.random.Generator]:
    seq = np.random.SeedSequence([int(seed), _KIND_INDEX[kind]])
    children = seq.spawn(n + 1)
    return [np.random.default_rng(c) for c in children[:n]], np.random.default_rng(children[n])


def _plan_one(rng, kind: str, sid: str, pid: str, anatomy, f: Findings, clinical: dict, hazard: dict | None) -> StudyPlan:
    paint_findings(rng, anatomy, f)
    report, gold = write_report(kind, f, rng)
    orientation = str(rng.choice(ORIENTATIONS))
    truth = {"study_id": sid, "patient_id": pid}
    # Without follow-up (pretrain) the hazard columns exist but are empty.
    truth.update(hazard if hazard is not None else dict.fromkeys(_HAZARD_KEYS, float("nan")))
    truth.update(_truth_fields(f, anatomy.scene, orientation))
    return StudyPlan(sid, pid, anatomy.scene, orientation, int(rng.integers(2**32)), report, gold, clinical, truth)


def plan_lung(n: int, seed: int) -> list[StudyPlan]:
    """Lung cancer patients, one study each; TNM and stage follow the findings."""
    rngs, surv_rng = _generators(seed, "lung", n)
    plans = []
    for i, rng in enumerate(rngs):
        anatomy = sample_anatomy(rng, fat_mm=sample_fat_mm(rng), rv_lv_ratio=float(rng.normal(0.88, 0.06)))
        f = sample_lung_findings(rng, anatomy)
        side = "right" if f.tumor.lobe.startswith("right") else "left"
        t, n_cat, m = t_category(f.tumor), n_category(side, [x.station for x in f.nodes]), m_category(f)
        clinical = lung_clinical(rng)
        clinical.update({"stage": stage_group(t, n_cat, m), "t_stage": t, "n_stage": n_cat, "m_stage": m})
        clinical = {k: clinical[k] for k in CLINICAL_COLUMNS["lung"]}
        pid = f"L{i + 1:04d}"
        plans.append(_plan_one(rng, "lung", f"{pid}_ct1", pid, anatomy, f, clinical, lung_log_hazard(clinical, f)))
    _add_follow_up(plans, surv_rng, "lung")
    return plans


def plan_pe(n: int, seed: int) -> list[StudyPlan]:
    """CT pulmonary angiograms; about 45% positive, risk mostly from the images."""
    rngs, surv_rng = _generators(seed, "pe", n)
    plans = []
    for i, rng in enumerate(rngs):
        positive = bool(rng.random() < 0.45)
        chronic = positive and bool(rng.random() < 0.12)
        subseg = positive and not chronic and bool(rng.random() < 0.15)
        cancer = bool(rng.random() < 0.12)
        clots = sample_clots(rng, chronic=chronic, subsegmental_only=subseg) if positive else []
        burden = sum({"saddle": 3.0, "main": 3.0, "lobar": 2.0, "segmental": 1.0, "subsegmental": 0.5}[c.level] for c in clots)
        rv_lv = float(np.clip(rng.normal(0.88, 0.07) + (0.09 * burden if not chronic else 0.05 * burden), 0.7, 1.8))
        anatomy = sample_anatomy(rng, fat_mm=sample_fat_mm(rng), rv_lv_ratio=rv_lv)
        f = sample_pe_findings(rng, anatomy, clots=clots, cancer=cancer)
        age = int(np.clip(round(rng.normal(62.0, 15.0)), 18, 95))
        clinical = {
            "age": age,
            "sex": str(rng.choice(["female", "male"])),
            "pe_positive": positive,
            "pe_acute": positive and not chronic,
            "subsegmental_only": subseg,
        }
        clinical.update(pe_vitals(rng, f, age=age))
        pid = f"E{i + 1:04d}"
        plans.append(_plan_one(rng, "pe", f"{pid}_ctpa", pid, anatomy, f, clinical, pe_log_hazard(clinical, f, cancer=cancer)))
    _add_follow_up(plans, surv_rng, "pe")
    return plans


def plan_pretrain(n: int, seed: int, mix: PretrainMix | None = None) -> list[StudyPlan]:
    """General chest CTs with reports and no follow-up; a quarter of the patients have a
    second reconstruction (same anatomy and report, another in-plane grid), as in CT-RATE.
    ``mix``: how often each finding occurs (None: the demo pretrain cohort's)."""
    mix = mix or PretrainMix()
    rngs, _ = _generators(seed, "pretrain", n)
    plans: list[StudyPlan] = []
    patient = 0
    for rng in rngs:
        if len(plans) >= n:
            break
        patient += 1
        pid = f"P{patient:04d}"
        # Emboli (never subsegmental only: too small for the demo grid) and cardiomegaly are
        # drawn before the anatomy, which shows their right-heart strain and heart size.
        cardiomegaly = bool(rng.random() < 0.12)
        clots = sample_clots(rng, chronic=bool(rng.random() < 0.15), subsegmental_only=False) if rng.random() < 0.1 else []
        burden = sum(CLOT_WEIGHT[c.level] for c in clots)
        rv_lv = float(np.clip(rng.normal(0.88, 0.06) + 0.09 * burden, 0.7, 1.8))
        anatomy = sample_anatomy(rng, fat_mm=sample_fat_mm(rng), rv_lv_ratio=rv_lv, heart_scale=1.18 if cardiomegaly else 1.0)
        f = sample_pretrain_findings(rng, anatomy, clots=clots, cardiomegaly=cardiomegaly, mix=mix)
        clinical = {"age": int(np.clip(round(rng.normal(56.0, 15.0)), 18, 92)), "sex": str(rng.choice(["female", "male"]))}
        plan = _plan_one(rng, "pretrain", f"{pid}_a_1", pid, anatomy, f, clinical, None)
        plans.append(plan)
        if len(plans) < n and rng.random() < 0.25:
            plans.append(_second_reconstruction(rng, plan))
    return plans


def _second_reconstruction(rng: np.random.Generator, plan: StudyPlan) -> StudyPlan:
    scene = copy.copy(plan.scene)
    sx = float(np.round(rng.uniform(2.8, 5.0), 2))
    fov = plan.scene.size[0] * plan.scene.spacing[0]
    n_xy = int(np.clip(round(fov / sx), 64, 128))
    scene.spacing = (sx, sx, plan.scene.spacing[2])
    scene.size = (n_xy, n_xy, plan.scene.size[2])
    scene.origin = (-(n_xy - 1) / 2 * sx, -(n_xy - 1) / 2 * sx, plan.scene.origin[2])
    orientation = str(rng.choice(ORIENTATIONS))
    truth = dict(plan.truth, study_id=plan.study_id[:-1] + "2", orientation=orientation, spacing_x=sx, spacing_y=sx, size_x=n_xy, size_y=n_xy)
    return StudyPlan(truth["study_id"], plan.patient_id, scene, orientation, int(rng.integers(2**32)), plan.report, plan.gold, dict(plan.clinical), truth)


def _add_follow_up(plans: list[StudyPlan], rng: np.random.Generator, kind: str) -> None:
    target, median = FOLLOW_UP[kind]
    lh = np.array([p.truth["log_hazard"] for p in plans])
    time, event, window = sample_follow_up(rng, lh, censored_fraction=target, median_days=median)
    for p, t, e in zip(plans, time, event):
        p.truth.update({"time": float(t), "event": int(e), "follow_up_window_days": window})


def plan_dataset(kind: str, n: int, seed: int, mix: PretrainMix | None = None) -> list[StudyPlan]:
    """Plans for ``n`` studies of ``kind`` ("pretrain", "lung" or "pe"); ``mix`` only for "pretrain"."""
    if kind == "pretrain":
        return plan_pretrain(n, seed, mix)
    if mix is not None:
        raise ValueError(f"a findings mix applies to the pretrain kind only, not {kind!r}")
    return {"lung": plan_lung, "pe": plan_pe}[kind](n, seed)


def gold_rows(plans: list[StudyPlan]) -> list[tuple[str, GoldAnswer]]:
    return [(p.study_id, p.gold[q]) for p in plans for q in QUESTION_IDS]
