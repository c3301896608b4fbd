"""README.md of a generated demo dataset: what it is, its columns, its hazard."""

from __future__ import annotations

import pandas as pd

from .cohort import FOLLOW_UP
from .phantom import TISSUES
from .phenotypes import PHENOTYPES

_ABOUT = {
    "pretrain": (
        "General chest CTs in the manner of CT-RATE: reports with findings and impression, "
        "no follow-up.  About a quarter of the patients have a second reconstruction "
        "(`_a_2`: same anatomy and report, another in-plane grid).  Unlike the survival "
        "cohorts' reports, these describe emphysema and its extent, body habitus and "
        "subcutaneous fat, and a tumour's necrotic core, so that an encoder pre-trained on them "
        "(with `phenotypes.csv`) learns to see what carries image-only risk elsewhere."
    ),
    "lung": (
        "Lung cancer patients, one contrast CT each.  Every patient has a primary tumour; "
        "T/N/M and stage (8th edition, simplified) follow the findings in the volume: T from "
        "the longest axial diameter (<=30 mm T1, <=50 T2, <=70 T3, larger or invading the "
        "pulmonary artery or SVC T4); N from the enlarged stations (ipsilateral hilar N1, "
        "ipsilateral mediastinal or subcarinal N2, contralateral N3); M1 for a malignant "
        "effusion or a liver, adrenal, brain (stated in the history, outside the scan) or "
        "bone metastasis."
    ),
    "pe": (
        "CT pulmonary angiograms.  About 45% show emboli (saddle, main, lobar, segmental, or "
        "subsegmental only; some chronic).  Right ventricular dilation grows with clot burden; "
        "some patients have an incidental lung cancer, with metastases now and then.  Vitals "
        "are shifted slightly by clot burden and right heart strain."
    ),
}

_HAZARD = {
    "lung": """log_hazard = clinical + findings + image_only
  clinical   = stage effect {1: 0, 2: 0.7, 3: 1.4, 4: 2.2} + 0.04 (age - 67)
               + smoking {never: -0.2, former: 0, current: 0.25} + 0.15 [male]
  findings   = 0.012 (tumour size mm - 35) + 0.1 (number of enlarged node stations)
  image_only = 0.3 (necrosis_fraction - 0.2) / 0.1 - 0.3 (fat_mm - 18) / 7""",
    "pe": """log_hazard = clinical + findings + image_only
  clinical   = 0.012 (age - 62) + 0.008 (pulse - 88) + 0.03 (respiratory_rate - 18)
               - 0.006 (mean_arterial_pressure - 90)
  findings   = 1.6 [lung cancer] + 0.8 [metastases] + 0.4 [effusion] + 0.35 [saddle/main clot]
               + 0.15 clot_burden + 2.0 max(0, rv_lv_ratio - 0.95)
               (clot_burden: saddle or main 3, lobar 2, segmental 1, subsegmental 0.5)
  image_only = -0.7 (fat_mm - 18) / 7 + 0.6 (emphysema_fraction - 0.05) / 0.1""",
}

_IMAGE_ONLY = {
    "lung": "the necrotic (low-density, -5 to 20 HU) core of the tumour and the thickness of the subcutaneous fat (thin fat: cachexia)",
    "pe": "the thickness of the subcutaneous fat (thin fat: cachexia) and the extent of emphysema (never mentioned in these reports)",
}


def dataset_readme(name: str, kind: str, manifest: pd.DataFrame, truth: pd.DataFrame, seed: int) -> str:
    lines = [
        f"# {name}: synthetic demo dataset (seed {seed})",
        "",
        "Written by `ctsurv demo-cohort` (rule `demo_cohort`).  Synthetic: no real patient.",
        "",
        _ABOUT[kind],
        "",
        f"Studies: {len(manifest)}; patients: {manifest['patient_id'].nunique()}.",
    ]
    if kind in FOLLOW_UP:
        censored = 1.0 - manifest["event"].astype(float).mean()
        lines += [f"Censored: {censored:.1%} (target {FOLLOW_UP[kind][0]:.1%}); time in days."]
    lines += [
        "",
        "## Files",
        "",
        "- `manifest.csv`: `study_id, patient_id, image` (relative path), `report`, `time` (days), "
        "`event` (1 death, 0 censored; empty without follow-up), then the clinical columns "
        "declared in config/config.yaml.",
        "- `images/<study_id>.nii.gz`: int16 HU.  Axes are stored in varied orientations "
        f"({', '.join(sorted(truth['orientation'].unique()))}) with the direction cosines set so that the "
        "anatomy is the same in physical space; in-plane spacing 2.8-5 mm, slices 4-8 mm, 64-128 "
        "voxels in-plane and 40-80 slices.",
        "- `labels/<study_id>.nii.gz`: uint8 tissue labels on the image's grid (table below).",
        "- `gold_answers.parquet`: one row per (study, question of config/questions.yaml): "
        "`answer` is the report's own sentence(s) on the topic, or `Not mentioned`; `present` is "
        "True only for a positive finding (a negated sentence such as `No pleural effusion.` has "
        "present False); `size_mm` is the largest size the answer states; `location` joins the "
        "canonical places it states with `; ` (lobe such as `right upper lobe` even when the "
        "report abbreviates it `RUL`; nodal region such as `subcarinal`; organ such as `liver` or "
        "`left adrenal gland`; vessel; `T8 vertebral body`; effusion side).  The metastases "
        "question covers organs outside the lungs and bone lesions worded as metastatic; the "
        "bones question covers every osseous lesion and degenerative change.",
        "- `truth.parquet`: `study_id, patient_id`, the latent fields (tumour lobe, size, "
        "centre in LPS mm, necrosis fraction, invaded vessel, node stations, metastasis sites, "
        "bone lesions, clots, RV/LV ratio, emphysema fraction, fat thickness, effusion depth, "
        "cardiomegaly, consolidation, coronary calcification, orientation, spacing, size)",
    ]
    phenotypes = (
        "- `phenotypes.csv`: `study_id`, then one 0/1 EHR-like code per column, set from the "
        "latent fields (so it matches the volume): "
        + "; ".join(f"`{name}` ({code}: {meaning})" for name, (code, meaning, _) in PHENOTYPES.items())
        + "."
    )
    if kind in FOLLOW_UP:
        lines[-1] += (
            ", and the true `log_hazard` with its parts `log_hazard_clinical`, "
            "`log_hazard_findings` and `log_hazard_image_only`, plus `time`, `event` and the "
            "follow-up window.  The oracle c-index is Harrell's c of `log_hazard` against "
            "`time`/`event`."
        )
        lines += [
            phenotypes,
            "",
            "## Hazard",
            "",
            "Weibull event times (shape 1.1) with the log-hazard below; censoring uniform over a "
            "staggered follow-up window solved to reach the target censored fraction.",
            "",
            "```",
            _HAZARD[kind],
            "```",
            "",
            f"Image-only risk: {_IMAGE_ONLY[kind]}.  Neither the report nor the clinical table "
            "states it; `log_hazard_image_only` is this part.",
        ]
    else:
        lines[-1] += "."
        lines.append(phenotypes)
    lines += ["", "## Tissue labels", "", "| id | tissue | HU range of its mean |", "|---|---|---|"]
    lines += [f"| {spec[0]} | {tissue} | {spec[1]:g} to {spec[2]:g} |" for tissue, spec in TISSUES.items()]
    return "\n".join(lines) + "\n"
