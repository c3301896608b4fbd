"""What is wrong with a synthetic patient: findings, their geometry, and TNM staging.

Samplers draw a :class:`Findings` for each cohort (lung cancer, pulmonary embolism,
general chest CT) on top of an :class:`~ctsurv.demo.anatomy.Anatomy`, so every finding has
a place in the volume; :func:`paint_findings` adds their shapes to the scene.  Reports are
written from the same object (:mod:`ctsurv.demo.reports`), which keeps the text, the
volume and the clinical table consistent.

Sizes are whole millimetres.  A tumour is an axis-aligned ellipsoid whose longest axial
diameter is exactly ``size_mm`` (its cranio-caudal extent is no longer), so the size a
report gives matches the mask to within a voxel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .anatomy import LOBES, STATIONS, Anatomy
from .phantom import Shape, tissue_hu


@dataclass
class Tumor:
    lobe: str
    size_mm: int  # longest axial diameter
    short_mm: int  # perpendicular axial diameter
    margin: str  # spiculated, lobulated, irregular, smooth
    kind: str  # "mass" (>= 30 mm) or "nodule"
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radii: tuple[float, float, float] = (1.0, 1.0, 1.0)
    necrosis: float = 0.0  # volume fraction of the necrotic core (never reported)
    vessel: str | None = None  # invaded vessel
    vessel_verb: str | None = None  # "encases" or "compresses"


@dataclass
class Node:
    station: str
    short_mm: int
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Effusion:
    side: str  # right, left, bilateral
    grade: str  # small, moderate, large
    depth_mm: int
    malignant: bool = False


@dataclass
class Metastasis:
    organ: str  # liver, right adrenal gland, left adrenal gland, brain
    size_mm: int | None
    center: tuple[float, float, float] | None = None  # None: outside the scan (brain)


@dataclass
class BoneLesion:
    level: str  # vertebra, e.g. T8
    kind: str  # lytic or blastic
    size_mm: int
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Clot:
    vessel: str
    level: str  # saddle, main, lobar, segmental, subsegmental
    chronic: bool = False


CLOT_WEIGHT = {"saddle": 3.0, "main": 3.0, "lobar": 2.0, "segmental": 1.0, "subsegmental": 0.5}


@dataclass
class Findings:
    """Everything a study shows; latent fields are never written in a report."""

    tumor: Tumor | None = None
    nodes: list[Node] = field(default_factory=list)
    effusion: Effusion | None = None
    metastases: list[Metastasis] = field(default_factory=list)
    bone_lesions: list[BoneLesion] = field(default_factory=list)
    clots: list[Clot] = field(default_factory=list)
    rv_lv_ratio: float = 0.9
    emphysema_fraction: float = 0.0
    fat_mm: float = 15.0
    cardiomegaly: bool = False
    granuloma: str | None = None  # lobe
    coronary_calcification: bool = False
    hiatal_hernia: bool = False
    consolidation: str | None = None  # lobe
    degenerative_spine: bool = False

    @property
    def clot_burden(self) -> float:
        return float(sum(CLOT_WEIGHT[c.level] for c in self.clots))


# ---------------------------------------------------------------------------- staging


def t_category(tumor: Tumor) -> str:
    """T of the 8th TNM edition from size and great-vessel invasion (simplified)."""
    if tumor.vessel is not None or tumor.size_mm > 70:
        return "T4"
    if tumor.size_mm > 50:
        return "T3"
    if tumor.size_mm > 30:
        return "T2"
    return "T1"


def n_category(tumor_side: str, stations: list[str]) -> str:
    """N from the involved stations: ipsilateral hilar N1, ipsilateral mediastinal or
    subcarinal N2, contralateral N3."""
    n = 0
    for st in stations:
        side = STATIONS[st][0]
        hilar = st.startswith("10")
        if side == "mid":
            n = max(n, 2)
        elif side != tumor_side:
            n = 3
        else:
            n = max(n, 1 if hilar else 2)
    return f"N{n}"


def m_category(findings: Findings) -> str:
    malignant_effusion = findings.effusion is not None and findings.effusion.malignant
    return "M1" if findings.metastases or findings.bone_lesions or malignant_effusion else "M0"


def stage_group(t: str, n: str, m: str) -> str:
    """Overall stage 1-4 (8th edition, grouped to the Roman numeral)."""
    if m == "M1":
        return "4"
    if n in ("N2", "N3") or t == "T4" or (t == "T3" and n == "N1"):
        return "3"
    if t == "T3" or n == "N1":
        return "2"
    return "1"


# ---------------------------------------------------------------------------- samplers


def _side(lobe: str) -> str:
    return "right" if lobe.startswith("right") else "left"


def _place_tumor(rng: np.random.Generator, anatomy: Anatomy, tumor: Tumor) -> None:
    d, s = tumor.size_mm / 2.0, tumor.short_mm / 2.0
    radii = (d, s) if rng.random() < 0.5 else (s, d)
    rz = float(rng.uniform(0.6, 1.0) * d)
    lung = anatomy.lung_of(tumor.lobe)
    if tumor.vessel is not None:
        p0, p1, _ = anatomy.vessels[tumor.vessel]
        if tumor.vessel == "superior vena cava":
            anchor = p0 + [0.0, 0.0, 35.0]
            center = anchor + [-0.55 * radii[0], 0.0, 0.0]
        else:
            center = p1 + [np.sign(p1[0]) * 0.55 * radii[0], 0.0, 0.0]
    else:
        jitter = rng.uniform(-0.12, 0.12, 3) * lung.radii
        center = anatomy.lobe_anchors[tumor.lobe] + jitter
    tumor.center = tuple(float(v) for v in center)
    tumor.radii = (float(radii[0]), float(radii[1]), rz)


def _lung_tumor(rng: np.random.Generator, anatomy: Anatomy, *, min_mm: int, max_mm: int, median_mm: float, vessel_p: float) -> Tumor:
    size = int(np.clip(round(rng.lognormal(np.log(median_mm), 0.45)), min_mm, max_mm))
    short = int(max(min_mm - 2, round(size * rng.uniform(0.6, 0.95))))
    lobe = str(rng.choice(LOBES, p=[0.3, 0.07, 0.18, 0.27, 0.18]))
    margin = str(rng.choice(["spiculated", "lobulated", "irregular", "smooth"], p=[0.4, 0.25, 0.2, 0.15]))
    tumor = Tumor(lobe, size, short, margin, "mass" if size >= 30 else "nodule")
    if size >= 30 and rng.random() < vessel_p:
        side = _side(lobe)
        options = ["right pulmonary artery", "superior vena cava"] if side == "right" else ["left pulmonary artery"]
        tumor.vessel = str(rng.choice(options))
        tumor.vessel_verb = "compresses" if tumor.vessel == "superior vena cava" else "encases"
        tumor.lobe = f"{side} upper lobe"
    tumor.necrosis = float(rng.beta(2.0, 4.0) * 0.6) if size >= 20 else 0.0
    _place_tumor(rng, anatomy, tumor)
    return tumor


def _nodes(rng, anatomy: Anatomy, stations: list[str]) -> list[Node]:
    out = []
    for st in stations:
        center = anatomy.stations[st] + rng.uniform(-3.0, 3.0, 3)
        out.append(Node(st, int(rng.integers(11, 28)), tuple(float(v) for v in center)))
    return out


def _metastasis(rng, anatomy: Anatomy, organ: str) -> Metastasis:
    if organ == "brain":
        return Metastasis(organ, None, None)
    if organ == "liver":
        size = int(rng.integers(10, 36))
        c, r = anatomy.liver
        center = c + [rng.uniform(-0.3, 0.2) * r[0], rng.uniform(-0.3, 0.3) * r[1], 0.0]
        center[2] = min(anatomy.z_diaphragm - 12.0, max(size / 2 + 4.0, c[2] + rng.uniform(-10, 20)))
    else:
        size = int(rng.integers(15, 40))
        center = anatomy.adrenals["right" if organ.startswith("right") else "left"].copy()
        center[2] = max(center[2], size / 2 + 4.0)
    return Metastasis(organ, size, tuple(float(v) for v in center))


def _bone_lesion(rng, anatomy: Anatomy, kind: str) -> BoneLesion | None:
    levels = [lv for lv, (c, r, h) in anatomy.vertebrae.items() if c[2] - h > 0 and lv.startswith("T")]
    if not levels:
        return None
    level = str(rng.choice(levels[1:] or levels))
    c, r, h = anatomy.vertebrae[level]
    size = int(np.clip(round(rng.uniform(8.0, 1.3 * r)), 8, int(1.5 * r)))
    center = c + [rng.uniform(-3, 3), rng.uniform(-3, 3), 0.0]
    return BoneLesion(level, kind, size, tuple(float(v) for v in center))


def sample_lung_findings(rng: np.random.Generator, anatomy: Anatomy) -> Findings:
    """A lung cancer patient: primary tumour, nodes, M1 sites, incidental findings."""
    f = Findings(fat_mm=anatomy.fat_mm, rv_lv_ratio=anatomy.rv_lv_ratio)
    f.tumor = _lung_tumor(rng, anatomy, min_mm=12, max_mm=90, median_mm=34.0, vessel_p=0.2)
    side = _side(f.tumor.lobe)
    ipsi = "R" if side == "right" else "L"
    contra = "L" if ipsi == "R" else "R"
    p_nodes = float(np.clip(0.3 + 0.01 * (f.tumor.size_mm - 30), 0.15, 0.8))
    stations: list[str] = []
    if rng.random() < p_nodes:
        stations.append(f"10{ipsi}")
        if rng.random() < 0.55:
            stations.append(str(rng.choice(["7", f"4{ipsi}", f"2{ipsi}"] + (["5"] if ipsi == "L" else []))))
        if rng.random() < 0.2:
            stations.append(str(rng.choice([f"4{contra}", f"10{contra}"])))
    f.nodes = _nodes(rng, anatomy, sorted(set(stations), key=stations.index))
    spread = 1.0 + 0.8 * len(f.nodes)
    if rng.random() < 0.08 * spread:
        grade = str(rng.choice(["small", "moderate", "large"], p=[0.5, 0.35, 0.15]))
        f.effusion = Effusion(side, grade, _effusion_depth(rng, grade), malignant=True)
    for organ, p in (("liver", 0.05), ("adrenal", 0.05), ("brain", 0.04)):
        if rng.random() < p * spread:
            if organ == "adrenal":
                organ = f"{rng.choice(['right', 'left'])} adrenal gland"
            f.metastases.append(_metastasis(rng, anatomy, organ))
    if rng.random() < 0.06 * spread:
        lesion = _bone_lesion(rng, anatomy, str(rng.choice(["lytic", "blastic"], p=[0.7, 0.3])))
        if lesion is not None:
            f.bone_lesions.append(lesion)
    _incidental(rng, f, anatomy, emphysema_p=0.45)
    return f


def _effusion_depth(rng, grade: str) -> int:
    lo, hi = {"small": (8, 20), "moderate": (22, 40), "large": (45, 70)}[grade]
    return int(rng.integers(lo, hi + 1))


def _incidental(rng, f: Findings, anatomy: Anatomy, *, emphysema_p: float) -> None:
    if rng.random() < emphysema_p:
        f.emphysema_fraction = float(rng.uniform(0.03, 0.3))
    f.granuloma = str(rng.choice(LOBES)) if rng.random() < 0.12 else None
    f.coronary_calcification = bool(rng.random() < 0.3)
    f.hiatal_hernia = bool(rng.random() < 0.08)


def sample_pe_findings(rng: np.random.Generator, anatomy: Anatomy, *, clots: list[Clot], cancer: bool) -> Findings:
    """A CT pulmonary angiogram: the given clots (from :func:`sample_clots`; none when
    negative), right heart size, effusion, and for ``cancer`` a lung tumour."""
    pe_positive = bool(clots)
    f = Findings(fat_mm=anatomy.fat_mm, rv_lv_ratio=anatomy.rv_lv_ratio, cardiomegaly=anatomy.rv_lv_ratio > 1.35)
    f.clots = list(clots)
    if cancer:
        f.tumor = _lung_tumor(rng, anatomy, min_mm=15, max_mm=70, median_mm=35.0, vessel_p=0.0)
        if rng.random() < 0.4:
            f.metastases.append(_metastasis(rng, anatomy, "liver"))
        if rng.random() < 0.15:
            lesion = _bone_lesion(rng, anatomy, "lytic")
            if lesion is not None:
                f.bone_lesions.append(lesion)
    if rng.random() < 0.12 + 0.15 * pe_positive + 0.2 * cancer:
        side = str(rng.choice(["right", "left", "bilateral"]))
        grade = str(rng.choice(["small", "moderate"], p=[0.75, 0.25]))
        f.effusion = Effusion(side, grade, _effusion_depth(rng, grade))
    _incidental(rng, f, anatomy, emphysema_p=0.4)
    return f


def sample_clots(rng: np.random.Generator, *, chronic: bool, subsegmental_only: bool) -> list[Clot]:
    """Emboli of a positive study: a saddle embolus now and then, 1-4 main, lobar or
    segmental clots, or for ``subsegmental_only`` one or two subsegmental ones."""
    if subsegmental_only:
        sides = ["right", "left"][: int(rng.integers(1, 3))]
        return [Clot(f"{s} lower lobe subsegmental artery", "subsegmental", chronic) for s in sides]
    pool = [
        ("right pulmonary artery", "main"),
        ("left pulmonary artery", "main"),
        ("right upper lobe pulmonary artery", "lobar"),
        ("right middle lobe pulmonary artery", "lobar"),
        ("right lower lobe pulmonary artery", "lobar"),
        ("left upper lobe pulmonary artery", "lobar"),
        ("left lower lobe pulmonary artery", "lobar"),
        ("right upper lobe segmental artery", "segmental"),
        ("right lower lobe segmental artery", "segmental"),
        ("left upper lobe segmental artery", "segmental"),
        ("left lower lobe segmental artery", "segmental"),
    ]
    weights = np.array([0.5, 0.5, 0.8, 0.5, 1.2, 0.8, 1.2, 1.0, 1.3, 1.0, 1.3])
    if rng.random() < 0.08 and not chronic:
        clots = [Clot("main pulmonary artery", "saddle")]
    else:
        clots = []
    k = int(rng.integers(1, 5))
    picks = rng.choice(len(pool), size=k, replace=False, p=weights / weights.sum())
    clots += [Clot(pool[i][0], pool[i][1], chronic) for i in sorted(picks)]
    return clots


@dataclass(frozen=True)
class PretrainMix:
    """How often the findings of a general chest CT occur (:func:`sample_pretrain_findings`).

    The default is the demo pretrain cohort's mix; the encoder's pre-training corpus
    (``ctsurv pretrain-encoder``) uses :data:`ENCODER_CORPUS_MIX`.  Changing these numbers
    changes only the values drawn, never how many, so the default mix gives the demo
    cohorts byte for byte.
    """

    tumor_p: float = 0.3
    tumor_median_mm: float = 24.0
    tumor_max_mm: int = 80
    nodes_p: float = 0.15
    effusion_p: float = 0.15
    metastasis_p: float = 0.3  # given a mass (>= 30 mm)
    bone_lesion_p: float = 0.05


#: The encoder corpus' mix: more and larger tumours (demo_lung's median is 34 mm), more
#: metastases and bone lesions (2-5% of the demo mix, too rare to learn from).
ENCODER_CORPUS_MIX = PretrainMix(tumor_p=0.55, tumor_median_mm=32.0, tumor_max_mm=90, nodes_p=0.25,
                                 effusion_p=0.2, metastasis_p=0.6, bone_lesion_p=0.2)


def sample_pretrain_findings(rng: np.random.Generator, anatomy: Anatomy, *, clots: list[Clot] = (), cardiomegaly: bool = False,
                             mix: PretrainMix = PretrainMix()) -> Findings:
    """A general chest CT: mostly normal, sometimes a nodule or mass, nodes, effusion, and
    the given emboli (drawn with the anatomy's RV/LV ratio) and cardiomegaly (drawn with
    its heart size) so the volume shows them; ``mix`` sets how often each finding occurs."""
    f = Findings(fat_mm=anatomy.fat_mm, rv_lv_ratio=anatomy.rv_lv_ratio, cardiomegaly=cardiomegaly)
    f.clots = list(clots)
    # Tumours often enough, and large enough, that necrotic cores are there to learn from.
    if rng.random() < mix.tumor_p:
        f.tumor = _lung_tumor(rng, anatomy, min_mm=8, max_mm=mix.tumor_max_mm, median_mm=mix.tumor_median_mm, vessel_p=0.1)
    if rng.random() < mix.nodes_p:
        stations = list(rng.choice(list(STATIONS), size=int(rng.integers(1, 3)), replace=False))
        f.nodes = _nodes(rng, anatomy, [str(s) for s in stations])
    if rng.random() < mix.effusion_p:
        grade = str(rng.choice(["small", "moderate", "large"], p=[0.6, 0.3, 0.1]))
        f.effusion = Effusion(str(rng.choice(["right", "left", "bilateral"])), grade, _effusion_depth(rng, grade))
    if f.tumor is not None and f.tumor.kind == "mass" and rng.random() < mix.metastasis_p:
        f.metastases.append(_metastasis(rng, anatomy, str(rng.choice(["liver", "left adrenal gland", "right adrenal gland"]))))
    if rng.random() < mix.bone_lesion_p:
        lesion = _bone_lesion(rng, anatomy, str(rng.choice(["lytic", "blastic"])))
        if lesion is not None:
            f.bone_lesions.append(lesion)
    f.consolidation = str(rng.choice(LOBES)) if rng.random() < 0.15 else None
    f.degenerative_spine = bool(rng.random() < 0.3)
    _incidental(rng, f, anatomy, emphysema_p=0.4)
    return f


# ---------------------------------------------------------------------------- painting


def paint_findings(rng: np.random.Generator, anatomy: Anatomy, f: Findings) -> None:
    """Add the findings' shapes to ``anatomy.scene`` (in place)."""
    shapes = anatomy.scene.shapes
    scene = anatomy.scene
    lung_like = ("lung", "emphysema")
    if f.consolidation is not None:
        c = anatomy.lobe_anchors[f.consolidation]
        r = float(rng.uniform(18.0, 32.0))
        shapes.append(Shape("consolidation", tissue_hu(rng, "consolidation"), "ellipsoid", tuple(c), (r, r * 0.8, r), inside=lung_like))
    if f.granuloma is not None:
        c = anatomy.lobe_anchors[f.granuloma] + rng.uniform(-10, 10, 3)
        shapes.append(Shape("calcification", tissue_hu(rng, "calcification"), "ellipsoid", tuple(c), (3.0, 3.0, 3.0)))
    if f.coronary_calcification:
        hc = anatomy.heart_center
        for _ in range(int(rng.integers(2, 5))):
            c = hc + rng.uniform([-30, -45, -10], [35, -25, 30])
            shapes.append(Shape("calcification", tissue_hu(rng, "calcification"), "ellipsoid", tuple(c), (2.5, 2.5, 2.5)))
    if f.hiatal_hernia:
        c = np.array([0.06 * anatomy.a, 0.35 * anatomy.b, anatomy.z_diaphragm + 5.0])
        shapes.append(Shape("soft_tissue", anatomy.hu["soft_tissue"], "ellipsoid", tuple(c), (18.0, 15.0, 20.0)))
        shapes.append(Shape("airway", anatomy.hu["airway"], "ellipsoid", tuple(c + [0, -3, 6]), (9.0, 7.0, 8.0)))
    if f.degenerative_spine:
        for level in list(anatomy.vertebrae)[2:6]:
            c, r, h = anatomy.vertebrae[level]
            shapes.append(Shape("bone", anatomy.hu["bone"], "ellipsoid", tuple(c + [0, -r, -h]), (6.0, 4.0, 4.0)))
    for clot in f.clots:
        _paint_clot(rng, anatomy, clot)
    for node in f.nodes:
        d = node.short_mm / 2.0
        shapes.append(Shape("lymph_node", tissue_hu(rng, "lymph_node"), "ellipsoid", node.center, (d, d * 1.25, d * 1.1)))
    for met in f.metastases:
        if met.center is None:
            continue
        r = met.size_mm / 2.0
        inside = ("liver",) if met.organ == "liver" else None
        shapes.append(Shape("metastasis", tissue_hu(rng, "metastasis"), "ellipsoid", met.center, (r, r, r), inside=inside))
    for lesion in f.bone_lesions:
        r = lesion.size_mm / 2.0
        tissue = f"{lesion.kind}_lesion"
        shapes.append(Shape(tissue, tissue_hu(rng, tissue), "ellipsoid", lesion.center, (r, r, r), inside=("bone",)))
    if f.tumor is not None:
        t = f.tumor
        shapes.append(Shape("tumor", tissue_hu(rng, "tumor"), "ellipsoid", t.center, t.radii, texture_sd=float(rng.uniform(4.0, 9.0))))
        if t.necrosis > 0.02:
            k = t.necrosis ** (1.0 / 3.0)
            shapes.append(Shape("necrosis", tissue_hu(rng, "necrosis"), "ellipsoid", t.center, tuple(k * r for r in t.radii), inside=("tumor",)))
    if f.effusion is not None:
        value = tissue_hu(rng, "effusion")
        sides = ["right", "left"] if f.effusion.side == "bilateral" else [f.effusion.side]
        for side in sides:
            lung = anatomy.lungs[side]
            z_top = lung.center[2] + (0.3 if f.effusion.grade == "large" else -0.1) * lung.radii[2]
            scene.effusions.append((*lung.center, *lung.radii, lung.power, float(f.effusion.depth_mm), float(z_top), value))
    if f.emphysema_fraction > 0:
        scene.emphysema = (f.emphysema_fraction, tissue_hu(rng, "emphysema"), int(rng.integers(2**31)))


def _paint_clot(rng, anatomy: Anatomy, clot: Clot) -> None:
    shapes = anatomy.scene.shapes
    value = tissue_hu(rng, "clot")
    if clot.level == "subsegmental":
        side = clot.vessel.split()[0]
        p0, p1, _ = anatomy.vessels[f"{side} lower lobe segmental artery"]
        tip = p1 + (p1 - p0) * 0.5
        shapes.append(Shape("blood", anatomy.hu["blood"], "capsule", tuple(p1), (2.5,) * 3, end=tuple(tip)))
        shapes.append(Shape("clot", value, "capsule", tuple(p1 + (tip - p1) * 0.4), (2.0,) * 3, end=tuple(tip), inside=("blood",)))
        return
    p0, p1, r = anatomy.vessels[clot.vessel]
    if clot.level == "saddle":
        # Straddles the bifurcation, reaching into both pulmonary arteries.
        for name in ("right pulmonary artery", "left pulmonary artery"):
            q0, q1, qr = anatomy.vessels[name]
            shapes.append(Shape("clot", value, "capsule", tuple(q0), (0.8 * qr,) * 3, end=tuple(q0 + 0.35 * (q1 - q0)), inside=("blood",)))
        return
    t0 = float(rng.uniform(0.15, 0.4))
    t1 = float(rng.uniform(0.6, 0.9))
    a, b = p0 + t0 * (p1 - p0), p0 + t1 * (p1 - p0)
    if clot.chronic:
        # Eccentric, wall-adherent: offset from the lumen's axis.
        offset = np.array([0.0, 0.5 * r, 0.0])
        shapes.append(Shape("clot", value, "capsule", tuple(a + offset), (0.55 * r,) * 3, end=tuple(b + offset), inside=("blood",)))
    else:
        shapes.append(Shape("clot", value, "capsule", tuple(a), (0.75 * r,) * 3, end=tuple(b), inside=("blood",)))
