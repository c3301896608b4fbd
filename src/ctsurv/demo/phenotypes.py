"""EHR-like phenotype codes of a demo study, derived from its latent truth.

Merlin learned from the diagnosis codes of each patient's record as well as from the
report; :func:`phenotype_frame` is the demo's stand-in for those codes: one 0/1 column per
phenotype, computed from the same truth fields the volume was painted from (so a code is
set exactly when its finding is in the volume, at the size thresholds below).  The
generator writes it as ``{dataset}/phenotypes.csv`` for every demo dataset; rule
``pretrain_encoder`` reads the pretrain cohort's table.

Interface of ``phenotypes.csv``: column ``study_id``, then one int column (0 or 1) per key
of :data:`PHENOTYPES`, in that order; one row per study of ``manifest.csv``, same order.

The continuous latents behind the codes (``fat_mm``, ``emphysema_fraction``,
``necrosis_fraction``, ``tumor_size_mm``, ``effusion_depth_mm``, ``rv_lv_ratio``, ...) stay
in ``truth.parquet`` of every dataset, for probes.
"""

from __future__ import annotations

import math

import pandas as pd

#: Fat thickness (mm) below which a patient is coded cachectic, above which obese.
CACHEXIA_FAT_MM, OBESITY_FAT_MM = 11.0, 26.0
#: Emphysema fraction from which the extent is coded (and reported) as severe.
SEVERE_EMPHYSEMA = 0.15
#: Emphysema fraction from which the extent is coded (and reported) as moderate.
MODERATE_EMPHYSEMA = 0.08
#: Fat thickness (mm) below which the habitus is coded (and reported) thin, above which overweight.
THIN_FAT_MM, OVERWEIGHT_FAT_MM = 15.0, 21.0
#: Tumour size cut-offs (mm) of the TNM 8th edition's T categories that a cancer registry
#: records: T1b from 10, T1c from 20, T2b from 40, T3 from 50, T4 from 70.
T_CUTS_MM = (10.0, 20.0, 40.0, 50.0, 70.0)
#: Necrotic volume fraction of a tumour from which it is coded (and reported) necrotic.
NECROTIC_TUMOR = 0.2
#: Longest diameter (mm) from which a lung tumour is a mass rather than a nodule.
MASS_MM = 30.0
#: RV/LV diameter ratio above which the right ventricle is coded dilated (strain).
RV_STRAIN = 1.0


def _num(value) -> float:
    """A truth value as a float; None and NaN (no such finding) become NaN."""
    if value is None:
        return math.nan
    return float(value)


def _present(value) -> bool:
    """Whether a truth value names a finding (None, NaN, "" and False do not)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


def _listed(value) -> list[str]:
    return [v for v in (value if _present(value) else "").split(";") if v]


def _t_code(cut: float):
    return lambda t: _num(t["tumor_size_mm"]) >= cut


# name -> (ICD-10-like code, what it means, rule on a truth row).  Graded findings get one
# code per grade the report names (emphysema mild / moderate / severe; habitus cachectic /
# thin / normal / overweight / obese) and tumours the registry's size-based T categories:
# cumulative 0/1 codes ("at least this grade"), so a multi-label loss on them is an ordinal
# regression of the extent, which is what the encoder must learn to see.
PHENOTYPES: dict[str, tuple[str, str, object]] = {
    "emphysema": ("J43.9", "any emphysema", lambda t: _num(t["emphysema_fraction"]) > 0),
    "emphysema_moderate": ("J43.2", f"emphysema of >= {MODERATE_EMPHYSEMA:.0%} of the lungs", lambda t: _num(t["emphysema_fraction"]) >= MODERATE_EMPHYSEMA),
    "emphysema_severe": ("J43.9", f"emphysema of >= {SEVERE_EMPHYSEMA:.0%} of the lungs", lambda t: _num(t["emphysema_fraction"]) >= SEVERE_EMPHYSEMA),
    "cachexia": ("R64", f"subcutaneous fat < {CACHEXIA_FAT_MM:g} mm", lambda t: _num(t["fat_mm"]) < CACHEXIA_FAT_MM),
    "thin_habitus": ("R63.6", f"subcutaneous fat < {THIN_FAT_MM:g} mm", lambda t: _num(t["fat_mm"]) < THIN_FAT_MM),
    "overweight": ("E66.3", f"subcutaneous fat > {OVERWEIGHT_FAT_MM:g} mm", lambda t: _num(t["fat_mm"]) > OVERWEIGHT_FAT_MM),
    "obesity": ("E66.9", f"subcutaneous fat > {OBESITY_FAT_MM:g} mm", lambda t: _num(t["fat_mm"]) > OBESITY_FAT_MM),
    "lung_nodule": ("R91.1", f"lung tumour < {MASS_MM:g} mm", lambda t: _num(t["tumor_size_mm"]) < MASS_MM),
    "lung_mass": ("R91.8", f"lung tumour >= {MASS_MM:g} mm", lambda t: _num(t["tumor_size_mm"]) >= MASS_MM),
    **{f"tumor_{int(cut)}mm": ("C34.9", f"lung tumour >= {cut:g} mm (T category)", _t_code(cut)) for cut in T_CUTS_MM},
    "necrotic_tumor": ("C34.9", f"tumour with a necrotic core >= {NECROTIC_TUMOR:.0%} of its volume", lambda t: _num(t["necrosis_fraction"]) >= NECROTIC_TUMOR),
    "pleural_effusion": ("J91.8", "pleural effusion", lambda t: _present(t["effusion"])),
    "lymphadenopathy": ("R59.0", "enlarged mediastinal or hilar node", lambda t: bool(_listed(t["node_stations"]))),
    "metastasis": ("C78.7", "liver or adrenal metastasis in the scan", lambda t: any(s != "brain" for s in _listed(t["metastasis_sites"]))),
    "bone_lesion": ("M89.9", "lytic or blastic vertebral lesion", lambda t: bool(_listed(t["bone_lesions"]))),
    "pulmonary_embolism": ("I26.9", "pulmonary embolus", lambda t: bool(_listed(t["clot_vessels"]))),
    "right_heart_strain": ("I26.0", f"RV/LV ratio > {RV_STRAIN:g}", lambda t: _num(t["rv_lv_ratio"]) > RV_STRAIN),
    "cardiomegaly": ("I51.7", "enlarged heart", lambda t: _present(t["cardiomegaly"])),
    "consolidation": ("J18.9", "lobar consolidation", lambda t: _present(t["consolidation"])),
    "coronary_calcification": ("I25.1", "coronary artery calcification", lambda t: _present(t["coronary_calcification"])),
}


def phenotype_row(truth: dict) -> dict[str, int]:
    """The 0/1 phenotype codes of one study from its truth fields."""
    return {name: int(bool(rule(truth))) for name, (_, _, rule) in PHENOTYPES.items()}


def phenotype_frame(truth: pd.DataFrame) -> pd.DataFrame:
    """``study_id`` and one 0/1 column per phenotype, for each row of a truth table."""
    rows = [{"study_id": t["study_id"], **phenotype_row(t)} for t in truth.to_dict("records")]
    return pd.DataFrame(rows, columns=["study_id", *PHENOTYPES]).astype({name: "int64" for name in PHENOTYPES})
