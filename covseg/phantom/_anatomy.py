"""The shape of a synthetic chest: body, chest wall, lungs, mediastinum, bones, big vessels.

Every shape is an implicit function of patient coordinates (mm, see :mod:`._grid`): ``u`` towards
the patient's left, ``v`` posterior, ``w`` superior, broadcastable arrays, so the same function
fills a grid and tests single points (vessel trees check that each branch stays in its lung).
Heights are also given as ``t``, the fraction of the lung height above the lung base
(0 = deepest costophrenic recess, 1 = apex).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Coord = npt.NDArray[np.floating] | float

#: Lung labels (the lung mask's values).
RIGHT, LEFT = 1, 2


@dataclass(frozen=True)
class Anatomy:
    """One patient's body measurements (mm), drawn at random by :meth:`sample`.

    Attributes
    ----------
    body_a, body_b
        Half-width and half-depth of the body outline (mm).
    body_v
        Posterior offset of the body centre (mm).
    fat
        Subcutaneous fat thickness (mm).
    wall_lateral, wall_anterior, wall_posterior
        Chest-wall (muscle and ribs) thickness at the side, front and back (mm).
    lung_base
        Height ``w`` of the deepest point of the lungs (mm).
    lung_height
        Lung base to apex (mm).
    dome_right, dome_left
        Height of each diaphragm dome above the lung base, as a fraction of the lung height.
    junction_gap
        Gap between the two lungs in front of the upper mediastinum (mm; 0 = touching).
    rib_pitch
        Vertical distance between ribs at the back (mm).
    rib_drop
        How much lower each rib is at the front than at the back (mm).
    rib_phase
        Height of the first rib's top above the apex, in pitches.
    lung_hu, bone_hu
        Mean lung parenchyma and vertebral cancellous bone density (HU).
    arms_down
        Whether the arms lie beside the chest (else they are raised out of the field).
    table_gap
        Distance from the back to the table top (mm).
    heart_turn
        Angle of the heart's long axis from the sagittal plane (radians, towards the left front).
    effusion_mm
        Depth of pleural fluid at the back of the lung bases (mm; 0 = none, the usual case).
    outline
        Relative amplitudes and phases (radians) of the 2-, 3- and 4-lobed bulges of the skin
        outline, as (a2, p2, a3, p3, a4, p4): no body is a perfect ellipse.
    """

    body_a: float
    body_b: float
    body_v: float
    fat: float
    wall_lateral: float
    wall_anterior: float
    wall_posterior: float
    lung_base: float
    lung_height: float
    dome_right: float
    dome_left: float
    junction_gap: float
    rib_pitch: float
    rib_drop: float
    rib_phase: float
    lung_hu: float
    bone_hu: float
    arms_down: bool
    table_gap: float
    heart_turn: float
    effusion_mm: float
    outline: tuple[float, ...]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        """A plausible adult chest."""
        height = rng.uniform(225.0, 265.0)
        return cls(
            body_a=rng.uniform(148.0, 172.0),
            body_b=rng.uniform(105.0, 125.0),
            body_v=rng.uniform(-12.0, -2.0),
            fat=rng.uniform(6.0, 22.0),
            wall_lateral=rng.uniform(8.0, 13.0),
            wall_anterior=rng.uniform(8.0, 12.0),
            wall_posterior=rng.uniform(18.0, 26.0),
            lung_base=-0.5 * height + rng.uniform(-12.0, 8.0),
            lung_height=height,
            dome_right=rng.uniform(0.24, 0.32),
            dome_left=rng.uniform(0.18, 0.25),
            junction_gap=rng.choice([0.0, rng.uniform(1.0, 6.0)]),
            rib_pitch=rng.uniform(23.0, 27.0),
            rib_drop=rng.uniform(95.0, 125.0),
            rib_phase=rng.uniform(0.1, 0.5),
            lung_hu=rng.uniform(-875.0, -835.0),
            bone_hu=rng.uniform(170.0, 300.0),
            arms_down=bool(rng.random() < 0.4),
            table_gap=rng.uniform(2.0, 15.0),
            heart_turn=rng.uniform(0.5, 0.8),
            effusion_mm=rng.uniform(8.0, 30.0) if rng.random() < 0.12 else 0.0,
            outline=tuple(
                float(x) for n in range(3) for x in (rng.uniform(0, 0.025), rng.uniform(0, 6.3))
            ),
        )

    # -- derived geometry -------------------------------------------------------------------
    def t(self, w: Coord) -> npt.NDArray[np.floating]:
        """Fraction of the lung height above the lung base."""
        return (np.asarray(w) - self.lung_base) / self.lung_height

    def w_at(self, t: float) -> float:
        """Height (mm) of lung fraction ``t``."""
        return self.lung_base + t * self.lung_height

    @property
    def cavity_a(self) -> float:
        """Half-width of the chest cavity at its widest (mm)."""
        return self.body_a - self.fat - self.wall_lateral

    @property
    def cavity_b(self) -> float:
        """Half-depth of the chest cavity (mm)."""
        front = self.body_v - self.body_b + 0.8 * self.fat + self.wall_anterior
        back = self.body_v + self.body_b - 0.8 * self.fat - self.wall_posterior
        return 0.5 * (back - front)

    @property
    def cavity_v(self) -> float:
        """Antero-posterior centre of the chest cavity (mm)."""
        front = self.body_v - self.body_b + 0.8 * self.fat + self.wall_anterior
        return front + self.cavity_b

    @property
    def spine_v(self) -> float:
        """Centre of the vertebral bodies (mm)."""
        return self.cavity_v + self.cavity_b - 25.0

    @property
    def trachea_v(self) -> float:
        """Centre of the trachea (mm), in front of the oesophagus."""
        return self.spine_v - 45.0

    def cavity_scale(self, t: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        """Cavity size relative to its widest: constant below mid-chest, narrowing to the apex."""
        above = np.clip((t - 0.45) / 0.8, 0.0, 0.95)
        below = np.clip((0.2 - t) / 0.5, 0.0, 1.0)
        return np.sqrt(1.0 - above**2) * (1.0 - 0.06 * below)


def _radial_depth(r2: npt.NDArray[np.floating], dist: npt.NDArray[np.floating]) -> Array:
    """Depth (mm, > 0 inside) of a point inside a star-shaped outline, measured along the ray
    from the centre; ``r2`` is its normalised squared radius, ``dist`` its distance to the centre.

    Exact for circles, close enough elsewhere to ramp an edge over one voxel.
    """
    r2 = np.maximum(np.asarray(r2, dtype=np.float32), np.float32(1e-6))
    return np.asarray(dist, dtype=np.float32) * (np.float32(1.0) / np.sqrt(r2) - np.float32(1.0))


def _superellipse(u: Coord, v: Coord, a: Coord, b: Coord, back_power: float) -> Array:
    """Depth (mm) in an outline flattened at the back (lying on the table)."""
    uu, vv = np.asarray(u, dtype=np.float32), np.asarray(v, dtype=np.float32)
    power = np.where(vv > 0, back_power, 2.0)
    r2 = (uu / a) ** 2 + np.abs(vv / b) ** power
    return _radial_depth(r2, np.sqrt(uu**2 + vv**2))


def body_depth(anat: Anatomy, u: Coord, v: Coord) -> Array:
    """Depth (mm) under the skin: a flattened ellipse with gentle bulges."""
    dv = np.asarray(v) - anat.body_v
    angle = np.arctan2(dv, np.asarray(u))
    bulge = 1.0 + sum(
        anat.outline[2 * n] * np.cos((n + 2) * angle + anat.outline[2 * n + 1]) for n in range(3)
    )
    return _superellipse(u, dv, anat.body_a * bulge, anat.body_b * bulge, 3.0)


def muscle_depth(anat: Anatomy, u: Coord, v: Coord) -> Array:
    """Depth (mm) under the subcutaneous fat (muscle, bone and everything deeper)."""
    a, b = anat.body_a - anat.fat, anat.body_b - anat.fat * 0.8
    return _superellipse(u, np.asarray(v) - anat.body_v, a, b, 3.0)


def cavity_depth(anat: Anatomy, u: Coord, v: Coord, w: Coord) -> Array:
    """Depth (mm) inside the chest cavity's elliptic cross-section."""
    s = anat.cavity_scale(anat.t(w))
    uu, vv = np.asarray(u), np.asarray(v) - anat.cavity_v
    r2 = (uu / (anat.cavity_a * s)) ** 2 + (vv / (anat.cavity_b * s)) ** 2
    return _radial_depth(r2, np.sqrt(uu**2 + vv**2))


def _mediastinum_halfwidth(
    anat: Anatomy, v: Coord, t: npt.NDArray[np.floating], side: int
) -> Array:
    """Distance (mm) from the midline to the lung's medial edge, by depth and height.

    In front the lungs nearly touch (the anterior junction line) above the heart; in the middle
    the trachea, oesophagus and aorta (on the left) keep them apart; at the back the spine.
    """
    vn = (np.asarray(v) - anat.cavity_v) / anat.cavity_b
    knots = [-1.0, -0.55, -0.2, 0.2, 0.55, 1.0]
    gap = 0.5 * anat.junction_gap
    if side == RIGHT:
        upper = [gap, gap + 1.0, 17.0, 19.0, 27.0, 27.0]
        lower = [12.0, 14.0, 22.0, 22.0, 27.0, 27.0]
    else:
        upper = [gap, gap + 1.0, 20.0, 26.0, 40.0, 30.0]
        lower = [16.0, 20.0, 26.0, 30.0, 40.0, 30.0]
    hi = np.interp(vn, knots, upper)
    lo = np.interp(vn, knots, lower)
    mix = np.clip((t - 0.45) / 0.15, 0.0, 1.0)
    return np.asarray(mix * hi + (1.0 - mix) * lo, dtype=np.float32)


def diaphragm_t(anat: Anatomy, u: Coord, v: Coord, side: int) -> npt.NDArray[np.floating]:
    """Height (as ``t``) of the diaphragm under each point: domes, lowest at the back and sides."""
    sign = -1.0 if side == RIGHT else 1.0
    dome = anat.dome_right if side == RIGHT else anat.dome_left
    du = (np.asarray(u) - sign * 0.45 * anat.cavity_a) / (0.75 * anat.cavity_a)
    dv = (np.asarray(v) - anat.cavity_v + 0.15 * anat.cavity_b) / (1.1 * anat.cavity_b)
    return dome * np.clip(1.0 - du**2 - dv**2, 0.0, 1.0) ** 0.7


def heart_depth(anat: Anatomy, u: Coord, v: Coord, w: Coord) -> Array:
    """Depth (mm) inside the heart: an ellipsoid left of the midline, resting on the left dome."""
    du = np.asarray(u) - 0.2 * anat.cavity_a
    dv = np.asarray(v) - (anat.cavity_v - 0.32 * anat.cavity_b)
    dw = np.asarray(w) - anat.w_at(anat.dome_left + 0.06)
    # The long axis points to the left front: rotate (u, v) into the heart's own axes.
    c, s = np.cos(anat.heart_turn), np.sin(anat.heart_turn)
    along, across = c * du - s * dv, s * du + c * dv
    r_along, r_across, rw = 0.5 * anat.cavity_a, 0.48 * anat.cavity_b, 0.24 * anat.lung_height
    r2 = (along / r_along) ** 2 + (across / r_across) ** 2 + (dw / rw) ** 2
    return _radial_depth(r2, np.sqrt(du**2 + dv**2 + dw**2))


def lung_depths(anat: Anatomy, u: Coord, v: Coord, w: Coord) -> tuple[Array, Array]:
    """Depth (mm, > 0 inside) in the right and the left lung (big mediastinal tubes not carved).

    A lung is the chest cavity on its side of the mediastinum, above the diaphragm, below a
    domed apex and outside the heart with its pericardial fat.
    """
    uu, vv, ww = np.asarray(u), np.asarray(v), np.asarray(w)
    # shared by both lungs: inside the cavity, outside the heart, below the apex
    shared = np.minimum(cavity_depth(anat, uu, vv, ww), -heart_depth(anat, uu, vv, ww) - 5.0)
    t = anat.t(ww)
    shared = np.minimum(shared, (1.0 - t) * anat.lung_height)
    right, left = (np.minimum(shared, _side_depth(anat, uu, vv, t, side)) for side in (RIGHT, LEFT))
    return right.astype(np.float32, copy=False), left.astype(np.float32, copy=False)


def _side_depth(
    anat: Anatomy,
    u: npt.NDArray[np.floating],
    v: npt.NDArray[np.floating],
    t: npt.NDArray[np.floating],
    side: int,
) -> Array:
    """Depth (mm) on one side of the mediastinum, above that dome, under that apex."""
    sign = -1.0 if side == RIGHT else 1.0
    depth = sign * u - _mediastinum_halfwidth(anat, v, t, side)
    s = anat.cavity_scale(t)
    apex = np.where(t < 0.6, s, np.sqrt(np.clip(1.0 - ((t - 0.6) / 0.4) ** 2, 0.0, 1.0)) * s)
    du = u - sign * 0.5 * anat.cavity_a * s
    dv = v - anat.cavity_v - 0.1 * anat.cavity_b
    r2 = (du / (0.62 * anat.cavity_a * apex + 1e-3)) ** 2 + (
        dv / (1.25 * anat.cavity_b * apex + 1e-3)
    ) ** 2
    depth = np.minimum(depth, _radial_depth(r2, np.sqrt(du**2 + dv**2)))
    depth = np.minimum(depth, (t - diaphragm_t(anat, u, v, side)) * anat.lung_height)
    return np.asarray(depth, dtype=np.float32)


def effusion_depth(anat: Anatomy, v: Coord, w: Coord, cavity: Array) -> Array:
    """Depth (mm) inside pleural fluid: a layer against the chest wall where the patient lies,
    deepest at the back of the lung bases (``cavity`` is :func:`cavity_depth`)."""
    vn = (np.asarray(v) - anat.cavity_v) / anat.cavity_b
    t = anat.t(np.asarray(w))
    dependent = np.clip(vn / 0.6, 0.0, 1.0) * np.clip((0.55 - t) / 0.35, 0.0, 1.0)
    return np.asarray(anat.effusion_mm * dependent - cavity, dtype=np.float32)


def fissure_distance(anat: Anatomy, u: Coord, v: Coord, w: Coord) -> tuple[Array, Array]:
    """Distances (mm) to the oblique fissures and to the right lung's horizontal fissure.

    The oblique fissure slopes from high at the back (``t`` = 0.72) to the front of the
    diaphragm; the horizontal one is level at ``t`` = 0.55, in front of the oblique one.
    """
    vv, t = np.asarray(v), anat.t(np.asarray(w))
    front = (vv - (anat.cavity_v - anat.cavity_b)) / (2.0 * anat.cavity_b)  # 0 front, 1 back
    # Laterally the fissure lies further forward: on an axial slice it runs obliquely.
    lateral = np.abs(np.asarray(u)) / anat.cavity_a - 0.5
    t_oblique = 0.08 + 0.64 * front + 0.22 * lateral
    slope = 0.64 * anat.lung_height / (2.0 * anat.cavity_b)  # mm up per mm back
    oblique = (t - t_oblique) * anat.lung_height / np.sqrt(1.0 + slope**2)
    horizontal = np.where(t_oblique > 0.55, (t - 0.55) * anat.lung_height, np.float32(1e3))
    return np.abs(oblique).astype(np.float32), np.abs(horizontal).astype(np.float32)
