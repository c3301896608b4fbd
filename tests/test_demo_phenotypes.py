"""The pretrain cohort's phenotype table matches what its volumes show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctsurv.demo import generate_dataset
from ctsurv.demo.nifti import read_canonical
from ctsurv.demo.phantom import LABEL
from ctsurv.demo.phenotypes import CACHEXIA_FAT_MM, MASS_MM, MODERATE_EMPHYSEMA, NECROTIC_TUMOR, OBESITY_FAT_MM, OVERWEIGHT_FAT_MM, PHENOTYPES, T_CUTS_MM, THIN_FAT_MM, SEVERE_EMPHYSEMA, phenotype_frame

N = 40  # seed 11: every volume-visible code below has positives and negatives


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    folder = generate_dataset("demo_pretrain", out, seed=11, n=N, workers=1, progress=False)
    return (
        folder,
        pd.read_csv(folder / "manifest.csv"),
        pd.read_parquet(folder / "truth.parquet"),
        pd.read_csv(folder / "phenotypes.csv"),
    )


def _measure(path) -> dict[str, float]:
    """What the label map shows: presence of tissues, emphysema and necrosis fractions,
    subcutaneous fat thickness on the anterior midline, the tumour's longest axial extent."""
    labels, spacing, origin = read_canonical(path)
    count = np.bincount(labels.ravel(), minlength=32)
    ix = int(np.argmin(np.abs(origin[0] + spacing[0] * np.arange(labels.shape[0]))))
    anterior = labels[ix, : labels.shape[1] // 2, :] == LABEL["fat"]
    tumour = np.isin(labels, [LABEL["tumor"], LABEL["necrosis"]])
    extent = 0.0
    if tumour.any():
        i, j, _ = np.nonzero(tumour)
        extent = max(np.ptp(i) * spacing[0], np.ptp(j) * spacing[1])
    return {
        "spacing": float(spacing[1]),
        "emphysema": count[LABEL["emphysema"]] / max(1, count[LABEL["lung"]] + count[LABEL["emphysema"]]),
        "fat_mm": float(np.median(anterior.sum(axis=0)) * spacing[1]),
        "tumour_voxels": int(tumour.sum()),
        "tumour_extent_mm": float(extent),
        "necrosis": count[LABEL["necrosis"]] / max(1, int(tumour.sum())),
        **{t: int(count[LABEL[t]]) for t in ("effusion", "lymph_node", "metastasis", "clot", "consolidation", "lytic_lesion", "blastic_lesion")},
    }


def test_table_has_one_int_row_per_study_in_manifest_order(pretrain):
    _, manifest, truth, table = pretrain
    assert list(table.columns) == ["study_id", *PHENOTYPES]
    assert table["study_id"].tolist() == manifest["study_id"].tolist()
    assert all(table[c].dtype == np.int64 and set(table[c]) <= {0, 1} for c in PHENOTYPES)
    pd.testing.assert_frame_equal(table, phenotype_frame(truth))
    # Second reconstructions carry their patient's codes.
    by_patient = table.assign(patient=manifest["patient_id"]).groupby("patient")[list(PHENOTYPES)].nunique()
    assert (by_patient == 1).all().all()


def test_codes_match_the_label_maps(pretrain):
    folder, manifest, truth, table = pretrain
    codes = table.set_index("study_id")
    seen = {name: set() for name in PHENOTYPES}
    for t in truth.itertuples():
        m = _measure(folder / "labels" / f"{t.study_id}.nii.gz")
        c = codes.loc[t.study_id]
        for name in PHENOTYPES:
            seen[name].add(int(c[name]))
        # Exact: the painted emphysema is the truth's fraction of the lungs.
        assert m["emphysema"] == pytest.approx(t.emphysema_fraction, abs=2e-3), t.study_id
        assert c["emphysema"] == (m["emphysema"] > 0) and c["emphysema_severe"] == (m["emphysema"] >= SEVERE_EMPHYSEMA - 2e-3)
        if abs(m["emphysema"] - MODERATE_EMPHYSEMA) > 2e-3:
            assert c["emphysema_moderate"] == (m["emphysema"] >= MODERATE_EMPHYSEMA), t.study_id
        # Fat within a voxel; the code agrees wherever the measurement is clear of the cut.
        tol = m["spacing"] + 0.5
        assert abs(m["fat_mm"] - t.fat_mm) <= tol, (t.study_id, m["fat_mm"], t.fat_mm)
        if abs(m["fat_mm"] - CACHEXIA_FAT_MM) > tol:
            assert c["cachexia"] == (m["fat_mm"] < CACHEXIA_FAT_MM), t.study_id
        if abs(m["fat_mm"] - OBESITY_FAT_MM) > tol:
            assert c["obesity"] == (m["fat_mm"] > OBESITY_FAT_MM), t.study_id
        if abs(m["fat_mm"] - THIN_FAT_MM) > tol:
            assert c["thin_habitus"] == (m["fat_mm"] < THIN_FAT_MM), t.study_id
        if abs(m["fat_mm"] - OVERWEIGHT_FAT_MM) > tol:
            assert c["overweight"] == (m["fat_mm"] > OVERWEIGHT_FAT_MM), t.study_id
        # Tumour: present in the volume exactly when coded; nodule vs mass by its extent.
        assert (c["lung_nodule"] or c["lung_mass"]) == (m["tumour_voxels"] > 0), t.study_id
        if m["tumour_voxels"] and abs(m["tumour_extent_mm"] - MASS_MM) > 2 * tol:
            assert c["lung_mass"] == (m["tumour_extent_mm"] >= MASS_MM), t.study_id
        # The T-category ladder: no tumour, no code; a painted axial extent clearly past a cut
        # is coded (the axis-aligned extent of an oblique tumour can be shorter than its size).
        for cut in T_CUTS_MM:
            if not m["tumour_voxels"]:
                assert c[f"tumor_{int(cut)}mm"] == 0, t.study_id
            elif m["tumour_extent_mm"] >= cut + 2 * tol:
                assert c[f"tumor_{int(cut)}mm"] == 1, (t.study_id, cut)
        if m["tumour_voxels"] and t.tumor_size_mm >= 20:
            assert m["necrosis"] == pytest.approx(t.necrosis_fraction, abs=0.1), t.study_id
            if abs(m["necrosis"] - NECROTIC_TUMOR) > 0.1:
                assert c["necrotic_tumor"] == (m["necrosis"] >= NECROTIC_TUMOR), t.study_id
        else:
            assert c["necrotic_tumor"] == 0
        # Findings with a label of their own.
        assert c["pleural_effusion"] == (m["effusion"] > 0), t.study_id
        assert c["lymphadenopathy"] == (m["lymph_node"] > 0), t.study_id
        assert c["metastasis"] == (m["metastasis"] > 0), t.study_id
        assert c["pulmonary_embolism"] == (m["clot"] > 0), t.study_id
        assert c["consolidation"] == (m["consolidation"] > 0), t.study_id
        assert c["bone_lesion"] == (m["lytic_lesion"] + m["blastic_lesion"] > 0), t.study_id
    visible = ("emphysema", "emphysema_severe", "cachexia", "lung_nodule", "lung_mass", "necrotic_tumor", "pleural_effusion",
               "lymphadenopathy", "pulmonary_embolism", "consolidation", "bone_lesion")
    assert all(seen[name] == {0, 1} for name in visible), {n: seen[n] for n in visible}


def test_codes_of_a_truth_row():
    row = {
        "emphysema_fraction": 0.2, "fat_mm": 8.0, "tumor_size_mm": None, "necrosis_fraction": 0.0, "effusion": None,
        "node_stations": "", "metastasis_sites": "brain", "bone_lesions": "T8:lytic", "clot_vessels": None,
        "rv_lv_ratio": 1.2, "cardiomegaly": False, "consolidation": None, "coronary_calcification": True, "study_id": "s",
    }
    codes = phenotype_frame(pd.DataFrame([row])).iloc[0]
    on = {name for name in PHENOTYPES if codes[name] == 1}
    # brain metastases are outside the scan; a missing tumour size is no tumour
    assert on == {"emphysema", "emphysema_moderate", "emphysema_severe", "cachexia", "thin_habitus", "bone_lesion",
                  "right_heart_strain", "coronary_calcification"}
    row.update(emphysema_fraction=0.1, fat_mm=24.0, tumor_size_mm=45.0, necrosis_fraction=0.1)
    codes = phenotype_frame(pd.DataFrame([row])).iloc[0]
    on = {name for name in PHENOTYPES if codes[name] == 1}
    # graded codes are cumulative: a 45 mm tumour is >= 10, 20, 40 mm but not 50 or 70
    assert on == {"emphysema", "emphysema_moderate", "overweight", "lung_mass", "tumor_10mm", "tumor_20mm", "tumor_40mm",
                  "bone_lesion", "right_heart_strain", "coronary_calcification"}
