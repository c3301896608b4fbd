"""Normal chest anatomy of one synthetic patient, and the landmarks findings are placed on.

:func:`sample_anatomy` draws a body habitus, a scanner grid (voxel spacing 2.8-5 mm
in-plane, 4-8 mm between slices, 64-128 voxels in-plane, 40-80 slices) and the normal
structures: subcutaneous fat, muscle, lungs, heart chambers, aorta, pulmonary arteries
down to segmental branches, superior vena cava, airways, vertebrae (named T1...L2), ribs,
sternum, liver and adrenal glands.  It returns an :class:`Anatomy` whose landmarks
(lobe anchors, nodal stations, vessels, vertebral levels) the finding samplers use so
that what a report says is where the volume shows it.

World frame: ITK's LPS in mm, x towards the patient's left, y posterior, z superior;
the body axis is x = y = 0 and z = 0 is the lowest slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .phantom import Scene, Shape, tissue_hu

LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
LOBE_ABBREV = {
    "right upper lobe": "RUL",
    "right middle lobe": "RML",
    "right lower lobe": "RLL",
    "left upper lobe": "LUL",
    "left lower lobe": "LLL",
}
# IASLC nodal stations used by the demo: name -> (side, description).
STATIONS = {
    "2R": ("right", "right upper paratracheal"),
    "2L": ("left", "left upper paratracheal"),
    "4R": ("right", "right lower paratracheal"),
    "4L": ("left", "left lower paratracheal"),
    "5": ("left", "subaortic (aortopulmonary window)"),
    "7": ("mid", "subcarinal"),
    "10R": ("right", "right hilar"),
    "10L": ("left", "left hilar"),
}
VERTEBRAE = tuple([f"T{i}" for i in range(1, 13)] + ["L1", "L2", "L3"])


@dataclass
class Lung:
    side: str  # "right" or "left"
    center: np.ndarray  # (3,)
    radii: np.ndarray  # (3,)
    power: float


@dataclass
class Anatomy:
    """A patient's normal anatomy: the scene so far and named landmarks (LPS mm)."""

    scene: Scene
    a: float  # body half-width
    b: float  # body half-depth
    fat_mm: float
    lungs: dict[str, Lung]
    lobe_anchors: dict[str, np.ndarray]
    stations: dict[str, np.ndarray]
    vessels: dict[str, tuple[np.ndarray, np.ndarray, float]]  # name -> (p0, p1, radius)
    vertebrae: dict[str, tuple[np.ndarray, float, float]]  # level -> (centre, radius, half-height)
    heart_center: np.ndarray
    rv_lv_ratio: float
    liver: tuple[np.ndarray, np.ndarray]
    adrenals: dict[str, np.ndarray]
    z_diaphragm: float
    hu: dict[str, float] = field(default_factory=dict)

    def lung_of(self, lobe: str) -> Lung:
        return self.lungs["right" if lobe.startswith("right") else "left"]


def sample_grid(rng: np.random.Generator, a: float, b: float) -> tuple[tuple, tuple, tuple]:
    """Spacing, size and origin of a scan covering the chest and upper abdomen."""
    s_xy = float(np.round(rng.uniform(2.8, 5.0), 2))
    s_z = float(rng.choice([4.0, 5.0, 6.0, 7.0, 8.0]))
    fov = 2.0 * max(a, b) + rng.uniform(30.0, 70.0)
    n_xy = int(np.clip(round(fov / s_xy), 64, 128))
    n_z = int(np.clip(round(rng.uniform(270.0, 320.0) / s_z), 40, 80))
    origin = (-(n_xy - 1) / 2 * s_xy, -(n_xy - 1) / 2 * s_xy, 0.0)
    return (s_xy, s_xy, s_z), (n_xy, n_xy, n_z), origin


def sample_anatomy(rng: np.random.Generator, *, fat_mm: float, rv_lv_ratio: float = 0.9, heart_scale: float = 1.0) -> Anatomy:
    """Draw a normal chest.

    Args:
        rng: the study's generator.
        fat_mm: subcutaneous fat thickness (a latent of the hazard: thin fat = cachexia).
        rv_lv_ratio: right-to-left ventricular diameter ratio (right heart strain when > 1).
        heart_scale: > 1 for cardiomegaly.
    """
    a = float(rng.uniform(140.0, 172.0))
    b = float(rng.uniform(95.0, 122.0))
    spacing, size, origin = sample_grid(rng, a, b)
    z_top = (size[2] - 1) * spacing[2]
    hu = {t: tissue_hu(rng, t) for t in ("fat", "soft_tissue", "lung", "myocardium", "blood", "bone", "liver", "adrenal", "airway")}
    # Right-heart blood is denser than left on a pulmonary angiogram.
    hu["blood_left"] = float(np.clip(hu["blood"] - rng.uniform(20, 80), 160, 310))
    scene = Scene(
        spacing=spacing,
        size=size,
        origin=origin,
        background_hu=-1000.0,
        noise_sd=float(rng.uniform(6.0, 14.0)),
        body=(a, b, fat_mm, hu["fat"], hu["soft_tissue"]),
    )
    shapes = scene.shapes

    z_diaphragm = float(rng.uniform(0.18, 0.26) * z_top)
    z_apex = float(z_top - rng.uniform(5.0, 20.0))

    # Liver first: the right lung base paints over its dome.
    liver_c = np.array([-0.3 * a, -0.05 * b, z_diaphragm - 35.0])
    liver_r = np.array([0.55 * a, 0.72 * b, 85.0])
    shapes.append(Shape("liver", hu["liver"], "ellipsoid", tuple(liver_c), tuple(liver_r), inside=("soft_tissue",)))
    adrenals = {
        "right": np.array([-0.2 * a, 0.38 * b, z_diaphragm - 30.0]),
        "left": np.array([0.2 * a, 0.38 * b, z_diaphragm - 32.0]),
    }
    for c in adrenals.values():
        shapes.append(Shape("adrenal", hu["adrenal"], "ellipsoid", tuple(c), (5.0, 11.0, 14.0)))

    lungs = {}
    rz = (z_apex - z_diaphragm) / 2.0
    for side, sign in (("right", -1.0), ("left", 1.0)):
        c = np.array([sign * 0.47 * a, 0.08 * b, z_diaphragm + rz - (8.0 if side == "right" else 0.0)])
        r = np.array([0.36 * a, 0.72 * b, rz + (8.0 if side == "right" else 0.0)])
        lungs[side] = Lung(side, c, r, 2.6)
        shapes.append(Shape("lung", hu["lung"], "ellipsoid", tuple(c), tuple(r), power=2.6, inside=("soft_tissue", "liver")))

    # Heart: myocardium, then the right and left ventricles' blood pools.
    heart_c = np.array([0.12 * a, -0.3 * b, z_diaphragm + 0.22 * (z_apex - z_diaphragm)])
    heart_r = np.array([0.33 * a, 0.38 * b, 55.0]) * heart_scale
    shapes.append(Shape("myocardium", hu["myocardium"], "ellipsoid", tuple(heart_c), tuple(heart_r)))
    lv_r = 0.22 * a * heart_scale
    rv_r = lv_r * rv_lv_ratio
    shapes.append(Shape("blood", hu["blood_left"], "ellipsoid", (heart_c[0] + 0.12 * a, heart_c[1] + 0.1 * b, heart_c[2]), (lv_r, lv_r * 0.9, 35.0), inside=("myocardium",)))
    shapes.append(Shape("blood", hu["blood"], "ellipsoid", (heart_c[0] - 0.1 * a - (rv_r - lv_r) * 0.5, heart_c[1] - 0.12 * b, heart_c[2]), (rv_r, rv_r * 0.8, 33.0), inside=("myocardium", "lung", "soft_tissue")))

    # Great vessels (capsules): aorta, pulmonary trunk and arteries, SVC.
    z_pa = heart_c[2] + heart_r[2] + rng.uniform(10.0, 25.0)
    z_carina = z_pa + 15.0
    z_arch = min(z_carina + 45.0, z_apex - 25.0)
    vessels: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}

    def vessel(name, p0, p1, r, value=None):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        vessels[name] = (p0, p1, r)
        shapes.append(Shape("blood", value if value is not None else hu["blood"], "capsule", tuple(p0), (r, r, r), end=tuple(p1)))

    aorta_r = rng.uniform(13.0, 17.0)
    asc = np.array([-0.04 * a, -0.2 * b, heart_c[2] + 20.0])
    arch_top = np.array([-0.02 * a, -0.15 * b, z_arch])
    desc_top = np.array([0.14 * a, 0.42 * b, z_arch - 5.0])
    vessel("ascending aorta", asc, arch_top, aorta_r, hu["blood_left"])
    vessel("aortic arch", arch_top, desc_top, aorta_r * 0.9, hu["blood_left"])
    vessel("descending aorta", desc_top, desc_top * [1, 1, 0], aorta_r * 0.8, hu["blood_left"])
    trunk0 = np.array([0.1 * a, -0.35 * b, heart_c[2] + 25.0])
    bif = np.array([0.08 * a, -0.08 * b, z_pa])
    vessel("main pulmonary artery", trunk0, bif, 13.0)
    r_hilum = np.array([-0.4 * a, 0.02 * b, z_pa - 6.0])
    l_hilum = np.array([0.4 * a, 0.06 * b, z_pa])
    vessel("right pulmonary artery", bif, r_hilum, 10.0)
    vessel("left pulmonary artery", bif, l_hilum, 9.0)
    for side, hilum, sx in (("right", r_hilum, -1.0), ("left", l_hilum, 1.0)):
        up = hilum + [sx * 20.0, -5.0, 55.0]
        down = hilum + [sx * 18.0, 30.0, -60.0]
        vessel(f"{side} upper lobe pulmonary artery", hilum, up, 5.5)
        vessel(f"{side} lower lobe pulmonary artery", hilum, down, 6.0)
        vessel(f"{side} upper lobe segmental artery", up, up + [sx * 25.0, -20.0, 25.0], 3.5)
        vessel(f"{side} lower lobe segmental artery", down, down + [sx * 25.0, 20.0, -25.0], 3.5)
        if side == "right":
            mid = hilum + [sx * 25.0, -35.0, -20.0]
            vessel("right middle lobe pulmonary artery", hilum, mid, 4.5)
    svc_bottom = np.array([-0.17 * a, -0.15 * b, heart_c[2] + heart_r[2] * 0.6])
    vessel("superior vena cava", svc_bottom, svc_bottom * [1, 1, 0] + [0, 0, z_top], 9.0)

    # Airways: trachea to the carina, then the main bronchi.
    carina = np.array([0.0, 0.12 * b, z_carina])
    for p0, p1, r in (
        (carina, carina * [1, 1, 0] + [0, 0, z_top], 8.5),
        (carina, r_hilum + [0, 15.0, 8.0], 6.0),
        (carina, l_hilum + [0, 15.0, 8.0], 5.5),
    ):
        shapes.append(Shape("airway", hu["airway"], "capsule", tuple(p0), (r, r, r), end=tuple(np.asarray(p1))))

    # Spine: vertebral bodies named from T1 (near the apex) downwards, spinal canal, sternum.
    vertebrae = {}
    height = float(rng.uniform(22.0, 27.0))
    v_y = 0.6 * b
    v_r = float(rng.uniform(16.0, 20.0))
    z = z_apex + 15.0
    for level in VERTEBRAE:
        if z < height / 2:
            break
        c = np.array([0.0, v_y, z])
        if z - height / 2 < z_top:
            vertebrae[level] = (c, v_r, (height - 5.0) / 2)
            shapes.append(Shape("bone", hu["bone"], "ellipsoid", tuple(c), (v_r, v_r * 0.85, (height - 5.0) / 2), power=3.0))
        z -= height
    canal = np.array([0.0, v_y + v_r + 8.0, 0.0])
    shapes.append(Shape("soft_tissue", float(rng.uniform(10.0, 20.0)), "capsule", tuple(canal), (7.0,) * 3, end=tuple(canal + [0, 0, z_top])))
    lamina = canal + [0, 13.0, 0]
    shapes.append(Shape("bone", hu["bone"], "capsule", tuple(lamina), (5.0,) * 3, end=tuple(lamina + [0, 0, z_top])))
    sternum = np.array([0.0, -(b - fat_mm - 12.0), heart_c[2]])
    shapes.append(Shape("bone", hu["bone"], "capsule", tuple(sternum), (7.0,) * 3, end=tuple(sternum + [0, 0, z_arch - heart_c[2] + 20.0])))
    scene.ribs = (float(rng.uniform(24.0, 30.0)), 8.0, hu["bone"])

    lobe_anchors = {}
    for side in ("right", "left"):
        lung = lungs[side]
        c, r = lung.center, lung.radii
        lat = 1.0 if side == "left" else -1.0
        lobe_anchors[f"{side} upper lobe"] = c + [lat * 0.1 * r[0], -0.15 * r[1], 0.5 * r[2]]
        lobe_anchors[f"{side} lower lobe"] = c + [lat * 0.1 * r[0], 0.45 * r[1], -0.45 * r[2]]
    rl = lungs["right"]
    lobe_anchors["right middle lobe"] = rl.center + [-0.1 * rl.radii[0], -0.5 * rl.radii[1], -0.25 * rl.radii[2]]

    stations = {
        "2R": np.array([-0.11 * a, 0.02 * b, z_carina + 50.0]),
        "2L": np.array([0.11 * a, 0.04 * b, z_carina + 50.0]),
        "4R": np.array([-0.13 * a, -0.02 * b, z_carina + 15.0]),
        "4L": np.array([0.11 * a, 0.02 * b, z_carina + 12.0]),
        "5": np.array([0.17 * a, -0.12 * b, z_carina + 5.0]),
        "7": np.array([0.0, 0.2 * b, z_carina - 18.0]),
        "10R": r_hilum + [-4.0, 14.0, -8.0],
        "10L": l_hilum + [4.0, 14.0, -8.0],
    }
    return Anatomy(
        scene=scene,
        a=a,
        b=b,
        fat_mm=fat_mm,
        lungs=lungs,
        lobe_anchors=lobe_anchors,
        stations=stations,
        vessels=vessels,
        vertebrae=vertebrae,
        heart_center=heart_c,
        rv_lv_ratio=rv_lv_ratio,
        liver=(liver_c, liver_r),
        adrenals=adrenals,
        z_diaphragm=z_diaphragm,
        hu=hu,
    )
