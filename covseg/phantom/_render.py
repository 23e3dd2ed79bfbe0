"""Paint a chest on the working grid: tissue densities (HU), lung regions and lesion fraction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from covseg.phantom import _bones
from covseg.phantom._anatomy import (
    LEFT,
    RIGHT,
    Anatomy,
    body_depth,
    cavity_depth,
    diaphragm_t,
    effusion_depth,
    fissure_distance,
    heart_depth,
    lung_depths,
    muscle_depth,
)
from covseg.phantom._grid import Array, Grid, sample_polyline, splat_tubes, upsample2
from covseg.phantom._lesions import draw_lesions
from covseg.phantom._outside import arm_depth, table_layers
from covseg.phantom._tubes import (
    Mediastinum,
    Roots,
    Tubes,
    branching_tree,
    clavicles,
    hilar_roots,
    lobar_trunks,
    mediastinum,
    tree_tubes,
    trunk_roots,
    wall_plaques,
)

#: Tissue densities (HU) before noise.
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "mediastinal_fat": -90.0,
    "muscle": 45.0,
    "blood": 40.0,
    "oesophagus": 35.0,
    "airway_wall": 20.0,
    "liver": 55.0,
    "spleen": 45.0,
    "stomach": 15.0,
    "csf": 15.0,
    "disc": 85.0,
    "cortex": 700.0,
    "pleura": 0.0,
    "fluid": 12.0,
    "calcification": 500.0,
    "table_skin": 250.0,
    "table_foam": -950.0,
}
#: Thickness of the interlobar fissures (mm).
FISSURE_MM = 0.4
#: Amplitude (s.d., HU) of the smooth texture of the lung parenchyma.
LUNG_TEXTURE_HU = 12.0


@dataclass(frozen=True)
class Drawing:
    """A chest on the working grid.

    Attributes
    ----------
    hu
        Density before noise (HU).
    right, left
        Each lung's region (booleans), trachea and main bronchi excluded.
    lesion
        Lesion fraction (0..1), inside the lungs only.
    """

    hu: Array
    right: npt.NDArray[np.bool_]
    left: npt.NDArray[np.bool_]
    lesion: Array


def _mix(img: Array, value: float | Array, fraction: Array | npt.NDArray[np.bool_]) -> None:
    """Blend ``value`` into ``img`` by ``fraction`` in place (partial volume)."""
    img += np.asarray(fraction, dtype=np.float32) * (np.float32(value) - img)


def _soft(depth: Array, ramp_mm: float) -> Array:
    """Fraction of a voxel inside an outline from its depth (mm): a one-voxel partial volume."""
    return np.clip(np.float32(0.5) + depth / np.float32(ramp_mm), 0.0, 1.0)


def draw_chest(
    anat: Anatomy, rng: np.random.Generator, grid: Grid, n_lesions: int, blur_mm: float
) -> Drawing:
    """Draw every structure, innermost last, and blur by the reconstruction kernel."""
    u, v, w = grid.coords()
    step = 0.6 * min(grid.spacing)
    ramp = grid.spacing[0]
    img = np.full(grid.shape, HU["air"], dtype=np.float32)
    _draw_outside(img, anat, u, v, ramp)
    _mix(img, HU["fat"], _soft(body_depth(anat, u, v), ramp))
    _mix(img, HU["muscle"], _soft(muscle_depth(anat, u, v), ramp))
    cavity_mm = cavity_depth(anat, u, v, w)
    cavity_frac = _soft(cavity_mm, ramp)
    _mix(img, HU["mediastinal_fat"], cavity_frac)
    cavity = cavity_frac > 0.5
    _draw_abdomen(img, anat, u, v, w, cavity)
    med = mediastinum(anat, float(w.max()), step)
    fluid = effusion_depth(anat, v, w, cavity_mm)
    right, left, lung_frac = _lungs(anat, grid, (u, v, w), med, fluid)
    _mix(img, HU["fluid"], _soft(fluid, ramp) * cavity_frac * (img < -50))
    lung = right | left
    vn = (v - anat.cavity_v) / anat.cavity_b
    parenchyma = anat.lung_hu + 30.0 * np.clip(vn, -1.0, 1.0)  # denser where the patient lies
    parenchyma = parenchyma + LUNG_TEXTURE_HU * _texture(rng, grid.shape)
    _mix(img, parenchyma, lung_frac)
    _draw_fissures(img, anat, u, v, w, right, left, ramp)
    lesions = draw_lesions(rng, grid, lung, _lesion_preference(anat, u, vn, w), n_lesions)
    _mix(img, lesions.hu, lesions.fraction)
    _draw_trees(img, anat, rng, grid, med, cavity, step)
    _mix(img, HU["blood"], _soft(heart_depth(anat, u, v, w), ramp))
    _mix(img, HU["blood"], splat_tubes(grid, med.vessels.points, med.vessels.radii))
    _mix(img, HU["oesophagus"], splat_tubes(grid, med.oesophagus.points, med.oesophagus.radii))
    _draw_incidentals(img, rng, grid, med)
    wall = med.trachea.widened(2.0)
    _mix(img, HU["airway_wall"], splat_tubes(grid, wall.points, wall.radii))
    _mix(img, HU["air"], splat_tubes(grid, med.trachea.points, med.trachea.radii))
    _draw_bones(img, anat, u, v, w)
    collar = clavicles(anat, step)
    _mix(img, HU["cortex"], splat_tubes(grid, collar.points, collar.radii))
    marrow = collar.widened(-1.8)
    _mix(img, anat.bone_hu, splat_tubes(grid, marrow.points, marrow.radii))
    sigma = [blur_mm / s for s in grid.spacing[:2]] + [0.0]
    img = ndimage.gaussian_filter(img, sigma=sigma, truncate=3.0)
    return Drawing(img, right, left, lesions.fraction)


def _draw_incidentals(img: Array, rng: np.random.Generator, grid: Grid, med: Mediastinum) -> None:
    """Findings of older patients, drawn at random: aortic wall calcification, gas in the
    oesophagus."""
    plaques = wall_plaques(rng, med.aorta, int(rng.integers(0, 9)) * int(rng.random() < 0.5))
    _mix(img, HU["calcification"], splat_tubes(grid, plaques.points, plaques.radii))
    if rng.random() < 0.3:
        gas = med.oesophagus.widened(0.0, scale=rng.uniform(0.25, 0.4))
        keep = rng.random() < 0.5  # upper or lower half of the oesophagus
        half = (gas.points[:, 2] > np.median(gas.points[:, 2])) == keep
        _mix(img, HU["air"], splat_tubes(grid, gas.points[half], gas.radii[half]))


def _lungs(
    anat: Anatomy, grid: Grid, uvw: tuple[Array, Array, Array], med: Mediastinum, fluid: Array
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], Array]:
    """Both lung regions and the lung fraction of each voxel.

    The central airways and great vessels are carved out with a 3 mm margin, and any pleural
    fluid (depth ``fluid`` in mm) compresses the lung away from the chest wall.
    """
    solid = Tubes.join([med.trachea, med.vessels, med.oesophagus]).widened(3.0)
    free = np.float32(1.0) - splat_tubes(grid, solid.points, solid.radii)
    right, left = (np.minimum(d, -fluid) for d in lung_depths(anat, *uvw))
    fraction = _soft(np.maximum(right, left), grid.spacing[0]) * free
    return (right > 0) & (free > 0.5), (left > 0) & (free > 0.5), fraction


def _lesion_preference(anat: Anatomy, u: Array, vn: Array, w: Array) -> Array:
    """Where COVID-19 lesions gather: low, posterior, and against the ribs more than the heart."""
    low = 1.2 - np.clip(anat.t(w), 0.0, 1.0)
    back = 1.3 + np.clip(vn, -1.0, 1.0)
    lateral = np.clip(np.abs(u) / (0.45 * anat.cavity_a), 0.15, 1.0)
    return np.asarray(low * back * lateral, dtype=np.float32)


def _draw_fissures(
    img: Array,
    anat: Anatomy,
    u: Array,
    v: Array,
    w: Array,
    right: npt.NDArray[np.bool_],
    left: npt.NDArray[np.bool_],
    voxel_mm: float,
) -> None:
    """The interlobar fissures: pleural sheets about 0.4 mm thick, faint lines on CT."""
    oblique, horizontal = fissure_distance(anat, u, v, w)
    sheet = np.float32(FISSURE_MM / voxel_mm)  # tissue share of a voxel the sheet crosses
    on_right = np.clip(1.0 - np.minimum(oblique, horizontal) / voxel_mm, 0.0, 1.0) * right
    on_left = np.clip(1.0 - oblique / voxel_mm, 0.0, 1.0) * left
    _mix(img, HU["pleura"], np.maximum(on_right, on_left) * sheet)


def _texture(rng: np.random.Generator, shape: tuple[int, int, int]) -> Array:
    """Smooth random field of unit s.d., correlated over about four voxels."""
    coarse_shape = tuple(-(-n // 4) for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape, dtype=np.float32), 0.7)
    coarse /= max(float(coarse.std()), 1e-6)
    for axis in range(3):
        coarse = upsample2(upsample2(coarse, axis), axis)
    return np.ascontiguousarray(coarse[: shape[0], : shape[1], : shape[2]])


def _draw_outside(img: Array, anat: Anatomy, u: Array, v: Array, ramp: float) -> None:
    """The table under the patient and, when down, the arms beside the chest."""
    skin, core = table_layers(anat, u, v)
    _mix(img, HU["table_foam"], _soft(core, ramp))
    _mix(img, HU["table_skin"], _soft(1.0 - skin, ramp))
    arm, humerus = arm_depth(anat, u, v)
    _mix(img, HU["fat"], _soft(arm, ramp))
    _mix(img, HU["muscle"], _soft(arm - 10.0, ramp))
    _mix(img, anat.bone_hu, _soft(humerus, ramp))
    _mix(img, HU["cortex"], _soft(humerus, ramp) * _soft(-(humerus - 3.0), ramp))


def _draw_abdomen(
    img: Array, anat: Anatomy, u: Array, v: Array, w: Array, cavity: npt.NDArray[np.bool_]
) -> None:
    """Diaphragm muscle; the liver under its right dome; spleen and a stomach with an air-fluid
    level under the left one."""
    t = anat.t(w)
    right_side = u < 0.12 * anat.cavity_a
    floor = np.where(right_side, diaphragm_t(anat, u, v, RIGHT), diaphragm_t(anat, u, v, LEFT))
    img[cavity & (t < floor)] = HU["muscle"]
    organs = cavity & (t < floor - 4.0 / anat.lung_height)  # under a 4 mm diaphragm
    img[organs & right_side] = HU["liver"]
    img[organs & ~right_side] = HU["spleen"]
    su, sv, sw = 0.45 * anat.cavity_a, anat.cavity_v - 0.25 * anat.cavity_b, anat.w_at(0.1)
    stomach = ((u - su) / 38.0) ** 2 + ((v - sv) / 30.0) ** 2 + ((w - sw) / 28.0) ** 2 < 1.0
    stomach &= organs & ~right_side
    img[stomach] = HU["stomach"]
    img[stomach & (v < sv - 8.0)] = HU["air"]  # supine: gas rises to the front


def _draw_trees(
    img: Array,
    anat: Anatomy,
    rng: np.random.Generator,
    grid: Grid,
    med: Mediastinum,
    cavity: npt.NDArray[np.bool_],
    step: float,
) -> None:
    """Pulmonary vessels (arteries and veins) and airways, branching from each hilum."""
    fine = max(0.45, 0.3 * min(grid.spacing[:2]))
    vein_shift = np.asarray([0.0, -6.0, -18.0])
    vessels = []
    for shift in (np.zeros(3), vein_shift):
        hila = [tuple(np.add(h, shift)) for h in med.hila]
        vessels.append(_tree(anat, rng, hila, (5.0, 2.5), fine, step))
    airways = _tree(anat, rng, list(med.bronchus_ends), (4.0, 2.0), max(1.0, 2 * fine), step)
    vessel = Tubes.join(vessels)
    inside = cavity.astype(np.float32)
    _mix(img, HU["blood"], splat_tubes(grid, vessel.points, vessel.radii) * inside)
    outer = airways.widened(0.4, scale=1.25)
    _mix(img, HU["airway_wall"], splat_tubes(grid, outer.points, outer.radii) * inside)
    _mix(img, HU["air"], splat_tubes(grid, airways.points, airways.radii) * inside)


def _tree(
    anat: Anatomy,
    rng: np.random.Generator,
    hila: list[tuple[float, float, float]],
    trunk_radius: tuple[float, float],
    min_radius: float,
    step: float,
) -> Tubes:
    """One tree per lung: lobar trunks from the hilum, branches from the hilum and the trunks."""
    roots, trunks = [], []
    for hilum, side in zip(hila, (RIGHT, LEFT), strict=True):
        roots.append(hilar_roots(hilum, side, trunk_radius[0]))
        for trunk in lobar_trunks(anat, hilum, side):
            radii = np.linspace(*trunk_radius, len(trunk))
            trunks.append(Tubes(*sample_polyline(trunk, radii, step)))
            roots.append(trunk_roots(rng, trunk, side, trunk_radius, 4))
    centres = {side: np.asarray(h) for h, side in zip(hila, (RIGHT, LEFT), strict=True)}
    segments = branching_tree(anat, rng, Roots.join(roots), centres, min_radius, (4.0, 7.0))
    return Tubes.join([*trunks, tree_tubes(segments, step)])


def _draw_bones(img: Array, anat: Anatomy, u: Array, v: Array, w: Array) -> None:
    """Spine with its canal and discs, ribs, shoulder blades and sternum."""
    bone, cortex, disc = _bones.spine(anat, u, v, w)
    canal = (u**2 + (v - anat.spine_v - 29.0) ** 2) < 8.5**2
    img[np.broadcast_to(canal, img.shape)] = HU["csf"]
    img[disc] = HU["disc"]
    img[bone] = anat.bone_hu
    img[cortex] = HU["cortex"]
    flat = (_bones.ribs(anat, u, v, w), _bones.scapulae(anat, u, v, w))
    for part in (*flat, _bones.sternum(anat, u, v, w)):
        img[part[0]] = anat.bone_hu
        img[part[1]] = HU["cortex"]
