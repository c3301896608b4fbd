"""Clinical tables, the true hazard of each patient, and follow-up drawn from it.

The true log-hazard is a sum of three parts, saved separately in ``truth.parquet``:

* ``log_hazard_clinical``: from the clinical table (age, sex, smoking, stage; vitals);
* ``log_hazard_findings``: from imaging findings a report describes (tumour size, nodes,
  metastases, clots, right heart strain, effusion), visible in the image too;
* ``log_hazard_image_only``: from image features no report and no clinical column states:
  subcutaneous fat thickness (thin = cachexia) in both cohorts, the tumour's necrotic
  core in the lung cohort, emphysema extent in the embolism cohort.

Lung cancer: clinical part dominates (stage, age).  Pulmonary embolism: findings and
image-only parts dominate, vitals are weakly predictive.

Event times are Weibull with the patient's hazard; censoring times are uniform over a
follow-up window whose length is solved so that the realised censored fraction equals
the target (22.5% lung, 65% embolism) exactly up to rounding to whole patients.
"""

from __future__ import annotations

import numpy as np

from .findings import Findings

STAGE_EFFECT = {"1": 0.0, "2": 0.7, "3": 1.4, "4": 2.2}
SMOKING_EFFECT = {"never": -0.2, "former": 0.0, "current": 0.25}

# Standardisation of the image-only latents (population mean, sd).
FAT_MEAN, FAT_SD = 18.0, 7.0
NECROSIS_MEAN, NECROSIS_SD = 0.2, 0.1
EMPHYSEMA_SD = 0.1


def sample_fat_mm(rng: np.random.Generator) -> float:
    return float(np.clip(rng.normal(FAT_MEAN, FAT_SD), 4.0, 35.0))


def lung_clinical(rng: np.random.Generator) -> dict:
    """Age, sex and smoking of a lung cancer patient (stage and TNM come from the findings)."""
    return {
        "age": int(np.clip(round(rng.normal(67.0, 9.0)), 38, 90)),
        "sex": str(rng.choice(["female", "male"], p=[0.45, 0.55])),
        "smoking": str(rng.choice(["never", "former", "current"], p=[0.12, 0.46, 0.42])),
    }


def lung_log_hazard(clinical: dict, f: Findings) -> dict[str, float]:
    clin = (
        STAGE_EFFECT[clinical["stage"]]
        + 0.04 * (clinical["age"] - 67)
        + SMOKING_EFFECT[clinical["smoking"]]
        + (0.15 if clinical["sex"] == "male" else 0.0)
    )
    size_mm = f.tumor.size_mm if f.tumor is not None else 0
    findings = 0.012 * (size_mm - 35) + 0.1 * len(f.nodes)
    necrosis = f.tumor.necrosis if f.tumor is not None else 0.0
    # Small enough that the clinical CoxPH stays within 0.05 of the oracle c-index.
    image_only = 0.3 * (necrosis - NECROSIS_MEAN) / NECROSIS_SD - 0.3 * (f.fat_mm - FAT_MEAN) / FAT_SD
    return _parts(clin, findings, image_only)


def pe_vitals(rng: np.random.Generator, f: Findings, *, age: int) -> dict:
    """Temperature (°F), respiratory rate, mean arterial pressure and pulse, weakly
    shifted by clot burden and right heart strain."""
    strain = max(0.0, f.rv_lv_ratio - 0.95)
    burden = f.clot_burden
    return {
        "temperature": round(float(rng.normal(98.5, 0.7)), 1),
        "respiratory_rate": round(float(np.clip(rng.normal(17.0 + 0.4 * burden, 3.5), 8, 40)), 1),
        "mean_arterial_pressure": round(float(np.clip(rng.normal(92.0 - 12.0 * strain + 0.1 * (age - 60), 13.0), 45, 140)), 1),
        "pulse": round(float(np.clip(rng.normal(84.0 + 25.0 * strain + 1.5 * burden, 14.0), 40, 160)), 1),
    }


def pe_log_hazard(clinical: dict, f: Findings, *, cancer: bool) -> dict[str, float]:
    clin = (
        0.012 * (clinical["age"] - 62)
        + 0.008 * (clinical["pulse"] - 88)
        + 0.03 * (clinical["respiratory_rate"] - 18)
        - 0.006 * (clinical["mean_arterial_pressure"] - 90)
    )
    central = any(c.level in ("saddle", "main") for c in f.clots)
    findings = (
        1.6 * cancer
        + 0.8 * bool(f.metastases or f.bone_lesions)
        + 0.4 * (f.effusion is not None)
        + 0.35 * central
        + 0.15 * f.clot_burden
        + 2.0 * max(0.0, f.rv_lv_ratio - 0.95)
    )
    image_only = -0.7 * (f.fat_mm - FAT_MEAN) / FAT_SD + 0.6 * (f.emphysema_fraction - 0.05) / EMPHYSEMA_SD
    return _parts(clin, findings, image_only)


def _parts(clin: float, findings: float, image_only: float) -> dict[str, float]:
    return {
        "log_hazard": float(clin + findings + image_only),
        "log_hazard_clinical": float(clin),
        "log_hazard_findings": float(findings),
        "log_hazard_image_only": float(image_only),
    }


def sample_follow_up(
    rng: np.random.Generator,
    log_hazard: np.ndarray,
    *,
    censored_fraction: float,
    median_days: float,
    shape: float = 1.1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Follow-up times and events from a Weibull proportional-hazards model.

    Args:
        rng: generator.
        log_hazard: (N,) true log-hazard, centred internally.
        censored_fraction: target fraction of censored patients.
        median_days: median event time of a patient at the mean log-hazard.
        shape: Weibull shape.

    Returns:
        (time (N,) days > 0, event (N,) int 0/1, follow-up window length in days).
    """
    lh = np.asarray(log_hazard, dtype=float)
    lh = lh - lh.mean()
    scale = median_days / np.log(2.0) ** (1.0 / shape)
    u = rng.random(lh.shape[0])
    event_time = scale * (-np.log(u) / np.exp(lh)) ** (1.0 / shape)
    entry = rng.uniform(0.1, 1.0, lh.shape[0])  # staggered entry: each patient's share of the window
    target = int(round(censored_fraction * lh.shape[0]))
    # Censoring time = window * entry; bisect the window (more window, fewer censored).
    lo, hi = 1e-3, float(event_time.max() / entry.min()) * 2.0 + 1.0
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        censored = int(np.sum(event_time > mid * entry))
        if censored > target:
            lo = mid
        else:
            hi = mid
    window = hi
    censor_time = window * entry
    event = (event_time <= censor_time).astype(int)
    time = np.maximum(np.round(np.minimum(event_time, censor_time), 1), 0.5)
    return time, event, float(window)
