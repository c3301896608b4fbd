"""The generated demo cohort: files, report/volume/table consistency, determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from ctsurv.cli import main as cli_main
from ctsurv.demo import generate_demo
from ctsurv.demo.cohort import CLINICAL_COLUMNS, DEMO_KINDS
from ctsurv.demo.findings import STATIONS, n_category, stage_group
from ctsurv.demo.gold import QUESTION_IDS
from ctsurv.demo.nifti import read_canonical
from ctsurv.demo.phantom import LABEL, TISSUES
from ctsurv.extraction.base import NOT_MENTIONED

N = {"demo_pretrain": 12, "demo_lung": 20, "demo_pe": 20}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, seed=5, n_pretrain=N["demo_pretrain"], n_lung=N["demo_lung"], n_pe=N["demo_pe"], workers=2, progress=False)
    return out


def _load(demo, name):
    folder = demo / name
    return (
        pd.read_csv(folder / "manifest.csv"),
        pd.read_parquet(folder / "gold_answers.parquet"),
        pd.read_parquet(folder / "truth.parquet"),
    )


def test_files_and_columns_follow_the_contract(demo, repo):
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text(encoding="utf-8"))
    for name, kind in DEMO_KINDS.items():
        manifest, gold, truth = _load(demo, name)
        declared = list(config["datasets"][name]["clinical"])
        assert CLINICAL_COLUMNS[kind] == declared
        assert list(manifest.columns) == ["study_id", "patient_id", "image", "report", "time", "event"] + declared
        assert len(manifest) == N[name] and manifest["study_id"].is_unique
        assert all((demo / name / p).is_file() for p in manifest["image"])
        assert all((demo / name / "labels" / f"{s}.nii.gz").is_file() for s in manifest["study_id"])
        assert (demo / name / "README.md").read_text(encoding="utf-8").startswith(f"# {name}")
        assert list(gold.columns) == ["study_id", "question_id", "answer", "present", "size_mm", "location"]
        assert len(gold) == len(manifest) * 6 and set(gold["question_id"]) == set(QUESTION_IDS)
        assert gold["present"].dtype == bool
        assert set(truth["study_id"]) == set(manifest["study_id"])
        assert pd.read_csv(demo / name / "phenotypes.csv")["study_id"].tolist() == manifest["study_id"].tolist()
        if kind == "pretrain":
            assert manifest["time"].isna().all() and manifest["event"].isna().all()
            assert manifest["patient_id"].nunique() < len(manifest)  # second reconstructions
        else:
            assert (manifest["time"] > 0).all() and set(manifest["event"]) <= {0, 1}
            assert {"log_hazard", "log_hazard_image_only"} <= set(truth.columns)


def test_gold_answers_are_the_reports_own_words(demo):
    for name in DEMO_KINDS:
        manifest, gold, _ = _load(demo, name)
        reports = dict(zip(manifest["study_id"], manifest["report"]))
        for row in gold.itertuples():
            if row.answer == NOT_MENTIONED:
                assert not row.present and pd.isna(row.size_mm) and pd.isna(row.location)
                continue
            for sentence in row.answer.split(". "):
                assert sentence.rstrip(".") in reports[row.study_id], (row.study_id, row.question_id)
            if not row.present:
                assert pd.isna(row.size_mm)
            if not pd.isna(row.size_mm):
                mm = int(row.size_mm)
                assert re.search(rf"(?<![\d.]){mm}( mm| x)|(?<![\d.]){mm / 10:.1f}( cm| x)", row.answer), row.answer
        # every topic is sometimes left out and sometimes negated
        for qid in ("pleura", "lymph_nodes"):
            answers = gold[gold["question_id"] == qid]
            assert (answers["answer"] == NOT_MENTIONED).any() or name == "demo_pretrain"
            assert (~answers["present"] & (answers["answer"] != NOT_MENTIONED)).any()


def test_volumes_have_plausible_hu_per_tissue_and_varied_grids(demo):
    manifest, _, truth = _load(demo, "demo_lung")
    seen = set()
    for sid in manifest["study_id"][:8]:
        image = sitk.ReadImage(str(demo / "demo_lung" / "images" / f"{sid}.nii.gz"))
        assert image.GetPixelID() == sitk.sitkInt16
        hu = sitk.GetArrayFromImage(image)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(demo / "demo_lung" / "labels" / f"{sid}.nii.gz")))
        for label in np.unique(labels):
            name = next(t for t, spec in TISSUES.items() if spec[0] == label)
            _, lo, hi = TISSUES[name]
            values = hu[labels == label].astype(float)
            if values.size >= 20:
                assert lo - 3 <= values.mean() <= hi + 3, (sid, name, values.mean())
            seen.add(name)
    assert {"air", "fat", "soft_tissue", "lung", "blood", "bone", "tumor", "liver", "airway"} <= seen
    assert truth["orientation"].nunique() >= 4
    assert truth["spacing_x"].nunique() >= 5 and truth["spacing_z"].nunique() >= 3


def test_reported_tumour_size_matches_the_mask_within_a_voxel(demo):
    manifest, gold, truth = _load(demo, "demo_lung")
    tumour = gold[gold["question_id"] == "primary_tumor"].set_index("study_id")
    truth = truth.set_index("study_id")
    for sid in manifest["study_id"]:
        labels, spacing, origin = read_canonical(demo / "demo_lung" / "labels" / f"{sid}.nii.gz")
        mask = np.isin(labels, [LABEL["tumor"], LABEL["necrosis"]])
        assert mask.any(), sid
        extents = [(np.ptp(np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != d)))[0]) + 1) * spacing[d] for d in (0, 1)]
        reported = tumour.loc[sid, "size_mm"]
        assert abs(max(extents) - reported) <= max(spacing[:2]) + 1e-6, (sid, extents, reported)
        assert tumour.loc[sid, "present"] and tumour.loc[sid, "location"] == truth.loc[sid, "tumor_lobe"]
        # the mask's centre is where truth says, in physical (LPS) space
        centre = [origin[d] + spacing[d] * np.nonzero(mask)[d].mean() for d in range(3)]
        expected = truth.loc[sid, ["tumor_center_x", "tumor_center_y", "tumor_center_z"]].to_numpy(float)
        assert np.abs(np.array(centre) - expected).max() <= max(spacing), sid


def test_lung_tnm_and_stage_follow_the_findings(demo):
    manifest, gold, truth = _load(demo, "demo_lung")
    merged = manifest.merge(truth, on=["study_id", "patient_id"])
    answers = gold.pivot(index="study_id", columns="question_id", values="present")
    for row in merged.itertuples():
        size = row.tumor_size_mm
        t = "T4" if isinstance(row.vessel_invasion, str) or size > 70 else "T3" if size > 50 else "T2" if size > 30 else "T1"
        assert row.t_stage == t, row.study_id
        stations = [s for s in (row.node_stations or "").split(";") if s]
        assert row.n_stage == n_category("right" if row.tumor_lobe.startswith("right") else "left", stations)
        m1 = bool(row.metastasis_sites) or bool(row.bone_lesions) or isinstance(row.effusion, str)
        assert row.m_stage == ("M1" if m1 else "M0")
        assert str(row.stage) == stage_group(row.t_stage, row.n_stage, row.m_stage)
        # the report supports what the table says
        assert answers.loc[row.study_id, "lymph_nodes"] == bool(stations)
        if row.m_stage == "M1":
            assert answers.loc[row.study_id, ["metastases", "pleura", "bones"]].any()
    assert stage_group("T1", "N0", "M0") == "1" and stage_group("T3", "N0", "M0") == "2"
    assert stage_group("T2", "N2", "M0") == "3" and stage_group("T1", "N0", "M1") == "4"
    assert n_category("right", ["10R"]) == "N1" and n_category("right", ["7"]) == "N2"
    assert n_category("right", ["4L"]) == "N3" and set(STATIONS) >= {"2R", "4R", "7", "10L"}


def test_pe_labels_clots_and_vitals_are_consistent(demo):
    manifest, gold, truth = _load(demo, "demo_pe")
    merged = manifest.merge(truth, on=["study_id", "patient_id"])
    vessels = gold[gold["question_id"] == "vessels"].set_index("study_id")
    assert merged["pe_positive"].any() and (~merged["pe_positive"]).any()
    for row in merged.itertuples():
        clots = [c for c in (row.clot_vessels or "").split(";") if c]
        assert row.pe_positive == bool(clots) == bool(vessels.loc[row.study_id, "present"])
        assert row.subsegmental_only == (bool(clots) and all("subsegmental" in c for c in clots))
        if not row.pe_positive:
            assert not row.pe_acute and not row.subsegmental_only
        if row.pe_positive and not row.subsegmental_only:
            labels, _, _ = read_canonical(demo / "demo_pe" / "labels" / f"{row.study_id}.nii.gz")
            assert (labels == LABEL["clot"]).any(), row.study_id
        assert 95 <= row.temperature <= 102 and 8 <= row.respiratory_rate <= 40
        assert 45 <= row.mean_arterial_pressure <= 140 and 40 <= row.pulse <= 160


def test_image_only_risk_is_never_written(demo):
    for name in ("demo_lung", "demo_pe"):
        manifest, _, truth = _load(demo, name)
        text = " ".join(manifest["report"]).lower()
        assert "necro" not in text and "fat" not in text and "cachex" not in text
        assert truth["log_hazard_image_only"].std() > 0.3
    pe_text = " ".join(_load(demo, "demo_pe")[0]["report"]).lower()
    assert "emphysema" not in pe_text


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    def make(folder, seed, workers):
        generate_demo(folder, seed=seed, n_pretrain=3, n_lung=4, n_pe=4, workers=workers, write_labels=False, progress=False)

    make(tmp_path / "a", 9, 1)
    make(tmp_path / "b", 9, 2)
    make(tmp_path / "c", 10, 1)
    for name in DEMO_KINDS:
        for file in ("manifest.csv", "gold_answers.parquet", "truth.parquet", "README.md"):
            assert (tmp_path / "a" / name / file).read_bytes() == (tmp_path / "b" / name / file).read_bytes(), (name, file)
        assert (tmp_path / "a" / name / "manifest.csv").read_bytes() != (tmp_path / "c" / name / "manifest.csv").read_bytes()
        sid = pd.read_csv(tmp_path / "a" / name / "manifest.csv")["study_id"][0]
        vol_a, _, _ = read_canonical(tmp_path / "a" / name / "images" / f"{sid}.nii.gz")
        vol_b, _, _ = read_canonical(tmp_path / "b" / name / "images" / f"{sid}.nii.gz")
        np.testing.assert_array_equal(vol_a, vol_b)
    assert not any(p.name.startswith(".") for p in (tmp_path / "a").iterdir())  # no partial folders left


def test_cli_writes_the_datasets_and_refuses_bad_sizes(tmp_path, capsys):
    code = cli_main(["demo-cohort", "--out", str(tmp_path), "--n-pretrain", "2", "--n-lung", "3", "--n-pe", "3", "--workers", "1", "--no-labels"])
    assert code == 0
    assert len(pd.read_csv(tmp_path / "demo_lung" / "manifest.csv")) == 3
    assert not (tmp_path / "demo_lung" / "labels").exists()
    assert cli_main(["demo-cohort", "--out", str(tmp_path), "--n-lung", "0"]) == 1
    assert "--n-lung must be at least 1" in capsys.readouterr().err
