"""Reports that teach: the pretrain reports describe the image-only latents of the survival
cohorts' hazards; the survival cohorts' reports never do (planning only, no volumes)."""

from __future__ import annotations

import re

import pytest

from ctsurv.demo.cohort import plan_lung, plan_pe, plan_pretrain
from ctsurv.demo.phenotypes import CACHEXIA_FAT_MM, NECROTIC_TUMOR, OBESITY_FAT_MM, SEVERE_EMPHYSEMA

# Any wording of emphysema, body habitus / subcutaneous fat or tumour necrosis.
IMAGE_ONLY_WORDS = re.compile(
    r"emphysem|bulla|low[- ]attenuation area|\bfat\b|adipose|habitus|subcutaneous|cachex|obes|slender|necro|"
    r"enhancing rim|homogeneous",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def pretrain():
    return plan_pretrain(400, 7)


@pytest.mark.parametrize("plan", [plan_lung, plan_pe])
def test_survival_reports_never_mention_the_image_only_latents(plan):
    plans = plan(400, 7)
    hits = [(p.study_id, m.group(0)) for p in plans if (m := IMAGE_ONLY_WORDS.search(p.report))]
    assert hits == []
    # ... while the latents vary and carry risk.
    assert max(p.truth["fat_mm"] for p in plans) - min(p.truth["fat_mm"] for p in plans) > 20
    assert sum(p.truth["emphysema_fraction"] > 0 for p in plans) > 100


def _findings(report: str) -> str:
    return report.split("Findings:", 1)[1]


def test_pretrain_reports_grade_emphysema_by_its_extent(pretrain):
    graded = {"severe": 0, "moderate": 0, "mild": 0, "none": 0}
    for p in pretrain:
        text, fraction = _findings(p.report).lower(), p.truth["emphysema_fraction"]
        if fraction >= SEVERE_EMPHYSEMA:
            assert re.search(r"(severe|extensive|advanced)\b[^.]*emphysem", text), p.report
            graded["severe"] += 1
        elif fraction >= 0.08:
            assert re.search(r"moderate\b[^.]*emphysem", text), p.report
            graded["moderate"] += 1
        elif fraction > 0:
            assert re.search(r"(mild|minimal|trace)\b[^.]*emphysem", text), p.report
            graded["mild"] += 1
        else:
            assert not re.search(r"(severe|extensive|advanced|moderate|mild|minimal|trace)\b[^.]*emphysem", text), p.report
            graded["none"] += 1
    assert min(graded.values()) >= 20, graded


def test_pretrain_reports_describe_body_habitus(pretrain):
    thin = re.compile(r"paucity of subcutaneous fat|little subcutaneous adipose")
    thick = re.compile(r"abundant subcutaneous|thick subcutaneous fat|\bobes")
    n_thin = n_thick = 0
    for p in pretrain:
        text, fat = p.report.lower(), p.truth["fat_mm"]
        assert bool(thin.search(text)) == (fat < CACHEXIA_FAT_MM), p.report
        assert bool(thick.search(text)) == (fat > OBESITY_FAT_MM), p.report
        n_thin += fat < CACHEXIA_FAT_MM
        n_thick += fat > OBESITY_FAT_MM
    assert n_thin >= 20 and n_thick >= 20
    # A stated thickness is the truth's, rounded.
    for p in pretrain:
        m = re.search(r"(?:subcutaneous fat|adipose tissue|fat layer)[^.]*?(?:about )?(\d+) mm", p.report)
        if m:
            assert int(m.group(1)) == round(p.truth["fat_mm"]), p.report


def test_pretrain_reports_describe_necrotic_tumour_cores(pretrain):
    necrotic = 0
    for p in pretrain:
        t = p.truth
        if t["tumor_size_mm"] is None:
            assert "necro" not in p.report.lower()
            continue
        says = re.search(r"necrotic|necrosis", p.report, re.IGNORECASE) and not re.search(r"without necrosis", p.report)
        if t["necrosis_fraction"] >= NECROTIC_TUMOR:
            necrotic += 1
            assert says and not re.search(r"small focus of central necrosis|minimal central", p.report), p.report
        elif t["necrosis_fraction"] <= 0.02:
            assert not says, p.report
    assert necrotic >= 10
