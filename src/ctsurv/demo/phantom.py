"""Synthetic chest CT phantoms: tissue labels, shape primitives and their rasterisation.

A phantom is a :class:`Scene`: a voxel grid (spacing, size, origin in ITK's LPS world,
x towards the patient's left, y posterior, z superior, in mm) and an ordered list of
:class:`Shape` primitives painted one over the other (painter's algorithm).  Each shape
carries a tissue label and a mean Hounsfield value; :func:`render` returns both the
int16 HU volume (with noise) and the uint8 label map, on the *canonical* grid whose
array axes (i, j, k) run along +x, +y, +z (orientation "LPS").  Writing the volume in
other orientations is :mod:`ctsurv.demo.nifti`'s job.

Every shape is evaluated only inside its bounding box, so a scene of a few dozen shapes
renders in tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# name -> (label id, lowest HU, highest HU).  A shape's mean HU is drawn inside its
# label's range; the tests check the rendered values against these ranges.
TISSUES: dict[str, tuple[int, float, float]] = {
    "air": (0, -1024.0, -950.0),
    "fat": (1, -130.0, -70.0),
    "soft_tissue": (2, 10.0, 60.0),
    "lung": (3, -880.0, -760.0),
    "emphysema": (4, -1000.0, -940.0),
    "airway": (5, -1024.0, -900.0),
    "myocardium": (6, 30.0, 60.0),
    "blood": (7, 150.0, 320.0),
    "bone": (8, 350.0, 1000.0),
    "liver": (9, 50.0, 110.0),
    "adrenal": (10, 20.0, 50.0),
    "tumor": (11, 40.0, 75.0),
    "necrosis": (12, -5.0, 20.0),
    "lymph_node": (13, 25.0, 55.0),
    "effusion": (14, 0.0, 20.0),
    "lytic_lesion": (15, 20.0, 120.0),
    "blastic_lesion": (16, 1050.0, 1500.0),
    "metastasis": (17, 20.0, 45.0),
    "clot": (18, 35.0, 70.0),
    "calcification": (19, 300.0, 900.0),
    "consolidation": (20, -60.0, 40.0),
}
LABEL = {name: spec[0] for name, spec in TISSUES.items()}
LABEL_NAMES = {spec[0]: name for name, spec in TISSUES.items()}


def tissue_hu(rng: np.random.Generator, tissue: str) -> float:
    """A mean HU for ``tissue``, drawn uniformly from the middle 80% of its range."""
    _, lo, hi = TISSUES[tissue]
    margin = 0.1 * (hi - lo)
    return float(rng.uniform(lo + margin, hi - margin))


@dataclass(frozen=True)
class Shape:
    """One primitive of a scene, in physical LPS millimetres.

    Attributes:
        tissue: key of :data:`TISSUES`.
        hu: mean HU painted inside the shape.
        kind: "ellipsoid" (superellipsoid with exponent ``power``; axis-aligned, ``radii``
            are the three semi-axes), "capsule" (all points within ``radii[0]`` of the
            segment ``center``-``end``) or "slab" (an ellipsoid restricted to
            ``z_range``).
        center: (3,) centre, or the capsule's first end point.
        radii: (3,) semi-axes; a capsule uses the first.
        end: (3,) the capsule's second end point.
        power: superellipsoid exponent (2 = ellipsoid; larger = boxier).
        inside: paint only over voxels currently holding one of these tissues (None: any).
        texture_sd: extra voxel-wise HU spread inside the shape (tumour heterogeneity).
        z_range: (lo, hi) z limits in mm, for kind "slab".
    """

    tissue: str
    hu: float
    kind: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    end: tuple[float, float, float] | None = None
    power: float = 2.0
    inside: tuple[str, ...] | None = None
    texture_sd: float = 0.0
    z_range: tuple[float, float] | None = None


@dataclass
class Scene:
    """A phantom: its grid and the shapes painted on it, in order.

    Attributes:
        spacing: (sx, sy, sz) voxel size in mm.
        size: (nx, ny, nz) voxels.
        origin: (3,) LPS position of voxel (0, 0, 0) of the canonical grid.
        background_hu: HU outside every shape (air).
        noise_sd: standard deviation of the Gaussian noise added to every voxel.
        shapes: painted in order, later over earlier.
        body: (a, b, fat_mm, hu_fat, hu_muscle): half-width and half-depth of the body
            ellipse (mm) and the thickness of its subcutaneous fat ring.
        ribs: (pitch_mm, thickness_mm, hu) of the rib cage drawn in the chest wall, or None.
        emphysema: (fraction, hu, seed) of lung voxels turned emphysematous, or None.
        effusions: (side_x_center, lung radii..., depth_mm, z_top, hu) posterior fluid layers.
    """

    spacing: tuple[float, float, float]
    size: tuple[int, int, int]
    origin: tuple[float, float, float]
    background_hu: float
    noise_sd: float
    body: tuple[float, float, float, float, float]
    shapes: list[Shape] = field(default_factory=list)
    ribs: tuple[float, float, float] | None = None
    emphysema: tuple[float, float, int] | None = None
    effusions: list[tuple] = field(default_factory=list)

    def axis_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical x, y, z of the voxel centres along each canonical axis, in mm."""
        return tuple(
            self.origin[d] + self.spacing[d] * np.arange(self.size[d], dtype=np.float32) for d in range(3)
        )


def _index_range(lo: float, hi: float, origin: float, spacing: float, n: int) -> slice:
    first = max(0, int(np.ceil((lo - origin) / spacing)))
    last = min(n - 1, int(np.floor((hi - origin) / spacing)))
    return slice(first, max(first, last + 1))


def _shape_mask(shape: Shape, coords, scene: Scene) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Boolean mask of ``shape`` inside its bounding box, and that box's index slices."""
    if shape.kind == "capsule":
        p0, p1 = np.asarray(shape.center, float), np.asarray(shape.end, float)
        r = shape.radii[0]
        lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
    else:
        c, rad = np.asarray(shape.center, float), np.asarray(shape.radii, float)
        lo, hi = c - rad, c + rad
        if shape.z_range is not None:
            lo[2], hi[2] = max(lo[2], shape.z_range[0]), min(hi[2], shape.z_range[1])
    box = tuple(_index_range(lo[d], hi[d], scene.origin[d], scene.spacing[d], scene.size[d]) for d in range(3))
    if any(s.stop <= s.start for s in box):
        return None
    x = coords[0][box[0]][:, None, None]
    y = coords[1][box[1]][None, :, None]
    z = coords[2][box[2]][None, None, :]
    if shape.kind == "capsule":
        d = p1 - p0
        length2 = float(d @ d) or 1e-9
        t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        dist2 = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
        mask = dist2 <= r * r
    else:
        p = shape.power
        mask = (
            np.abs((x - c[0]) / rad[0]) ** p + np.abs((y - c[1]) / rad[1]) ** p + np.abs((z - c[2]) / rad[2]) ** p
        ) <= 1.0
    return box, mask


def render(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise ``scene`` on its canonical grid.

    Args:
        scene: the phantom.
        rng: source of the noise and textures (seed it per study for reproducibility).

    Returns:
        hu: int16 array, shape (nx, ny, nz), axes along +x (left), +y (posterior),
            +z (superior); Hounsfield units with noise, clipped to [-1024, 3071].
        labels: uint8 array of the same shape, ids of :data:`TISSUES`.
    """
    nx, ny, nz = scene.size
    xs, ys, zs = scene.axis_coords()
    # Body: an elliptic cylinder of muscle inside a ring of subcutaneous fat, built on one
    # axial plane and repeated along z.
    a, b, fat_mm, hu_fat, hu_muscle = scene.body
    r_body = (xs[:, None] / a) ** 2 + (ys[None, :] / b) ** 2
    r_inner = (xs[:, None] / (a - fat_mm)) ** 2 + (ys[None, :] / (b - fat_mm)) ** 2
    plane_labels = np.where(r_inner <= 1.0, LABEL["soft_tissue"], np.where(r_body <= 1.0, LABEL["fat"], LABEL["air"]))
    plane_hu = np.where(r_inner <= 1.0, hu_muscle, np.where(r_body <= 1.0, hu_fat, scene.background_hu))
    labels = np.repeat(plane_labels.astype(np.uint8)[:, :, None], nz, axis=2)
    hu = np.repeat(plane_hu.astype(np.float32)[:, :, None], nz, axis=2)

    coords = (xs, ys, zs)
    for shape in scene.shapes:
        found = _shape_mask(shape, coords, scene)
        if found is None:
            continue
        box, mask = found
        if shape.inside is not None:
            allowed = np.isin(labels[box], [LABEL[t] for t in shape.inside])
            mask = mask & allowed
        if not mask.any():
            continue
        labels[box][mask] = LABEL[shape.tissue]
        values = np.full(int(mask.sum()), shape.hu, dtype=np.float32)
        if shape.texture_sd > 0:
            values += shape.texture_sd * rng.standard_normal(values.shape[0], dtype=np.float32)
        hu[box][mask] = values

    if scene.effusions:
        _paint_effusions(scene, labels, hu, coords)
    if scene.emphysema is not None:
        _paint_emphysema(scene, labels, hu)
    if scene.ribs is not None:
        _paint_ribs(scene, labels, hu, coords)

    hu += scene.noise_sd * rng.standard_normal(hu.shape, dtype=np.float32)
    np.clip(hu, -1024, 3071, out=hu)
    return np.rint(hu).astype(np.int16), labels


def _paint_effusions(scene: Scene, labels, hu, coords) -> None:
    """Posterior (dependent) fluid layers of given depth inside a lung's lower part."""
    xs, ys, zs = coords
    for cx, cy, cz, rx, ry, rz, power, depth, z_top, value in scene.effusions:
        box = (
            _index_range(cx - rx, cx + rx, scene.origin[0], scene.spacing[0], scene.size[0]),
            _index_range(cy - ry, cy + ry, scene.origin[1], scene.spacing[1], scene.size[1]),
            _index_range(cz - rz, z_top, scene.origin[2], scene.spacing[2], scene.size[2]),
        )
        if any(s.stop <= s.start for s in box):
            continue
        x = np.abs((xs[box[0]][:, None, None] - cx) / rx) ** power
        z = np.abs((zs[box[2]][None, None, :] - cz) / rz) ** power
        rest = np.clip(1.0 - x - z, 0.0, None)
        # The lung's posterior wall at each (x, z); fluid fills the last `depth` mm before it.
        y_wall = cy + ry * rest ** (1.0 / power)
        y = ys[box[1]][None, :, None]
        region = labels[box]
        mask = (region == LABEL["lung"]) & (y >= y_wall - depth) & (rest > 0)
        region[mask] = LABEL["effusion"]
        hu[box][mask] = value


def _paint_emphysema(scene: Scene, labels, hu) -> None:
    """Turn the lowest ``fraction`` of a smooth random field over the lungs into emphysema."""
    fraction, value, seed = scene.emphysema
    if fraction <= 0:
        return
    lung = labels == LABEL["lung"]
    n = int(lung.sum())
    if n == 0:
        return
    field_rng = np.random.default_rng(seed)
    coarse = field_rng.standard_normal((6, 6, 5)).astype(np.float32)
    smooth = _upsample_linear(coarse, labels.shape)
    # Upper-lobe predominance, as in centrilobular emphysema.
    smooth = smooth + np.linspace(0.8, -0.8, labels.shape[2], dtype=np.float32)[None, None, :]
    values = smooth[lung]
    cut = np.quantile(values, 1.0 - fraction)
    emph = np.zeros_like(lung)
    emph[lung] = values > cut
    labels[emph] = LABEL["emphysema"]
    hu[emph] = value


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation from n_in to n_out evenly spread samples."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    w = (pos - lo).astype(np.float32)
    out = np.zeros((n_out, n_in), dtype=np.float32)
    out[np.arange(n_out), lo] = 1.0 - w
    out[np.arange(n_out), lo + 1] = w
    return out


def _upsample_linear(coarse: np.ndarray, shape) -> np.ndarray:
    """Separable trilinear upsampling of a small (a, b, c) field to ``shape``."""
    wx, wy, wz = (_interp_matrix(n, c) for n, c in zip(shape, coarse.shape))
    out = np.einsum("ia,abc->ibc", wx, coarse)
    out = np.einsum("jb,ibc->ijc", wy, out)
    return (out.reshape(-1, coarse.shape[2]) @ wz.T).reshape(shape)


def _paint_ribs(scene: Scene, labels, hu, coords) -> None:
    """Ribs: bands of bone in the chest wall, sloping down anteriorly, one per pitch."""
    pitch, thickness, value = scene.ribs
    xs, ys, zs = coords
    a, b, fat_mm, _, _ = scene.body
    r = np.sqrt((xs[:, None] / (a - fat_mm)) ** 2 + (ys[None, :] / (b - fat_mm)) ** 2)
    wall = (r > 0.86) & (r < 0.93) & (ys[None, :] > -0.8 * b)  # no ribs over the sternum
    phase = np.mod(zs[None, None, :] + 0.25 * (b - ys[None, :, None]), pitch)
    mask = wall[:, :, None] & (phase < thickness)
    mask &= np.isin(labels, [LABEL["soft_tissue"], LABEL["fat"]])
    labels[mask] = LABEL["bone"]
    hu[mask] = value
