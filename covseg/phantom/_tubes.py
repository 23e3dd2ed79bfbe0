"""Tubular structures: the big mediastinal tubes and the branching vessel and airway trees.

Each structure is a set of centreline points with a radius at each point (mm, patient
coordinates), ready for :func:`._grid.splat_tubes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from covseg.phantom._anatomy import LEFT, RIGHT, Anatomy, diaphragm_t, lung_depths
from covseg.phantom._grid import sample_polyline, sample_segments

Points = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tubes:
    """Centreline points (n, 3) in mm and the tube radius at each (n,) in mm."""

    points: Points
    radii: npt.NDArray[np.float64]

    @classmethod
    def join(cls, parts: list[Tubes]) -> Tubes:
        """All parts as one set of points."""
        if not parts:
            return cls(np.zeros((0, 3)), np.zeros(0))
        return cls(
            np.concatenate([p.points for p in parts]), np.concatenate([p.radii for p in parts])
        )

    def widened(self, by_mm: float, scale: float = 1.0) -> Tubes:
        """The same centrelines with radii ``r * scale + by_mm`` (walls, carving margins)."""
        return Tubes(self.points, self.radii * scale + by_mm)


def _tube(nodes: list[tuple[float, float, float]], radii: list[float], step: float) -> Tubes:
    points, r = sample_polyline(np.asarray(nodes), np.asarray(radii), step)
    return Tubes(points, r)


@dataclass(frozen=True)
class Mediastinum:
    """Big tubes of the mediastinum (mm): central airways and great vessels."""

    trachea: Tubes  # trachea and the two main bronchi (lumen)
    vessels: Tubes  # aorta, superior vena cava, pulmonary trunk and arteries
    aorta: Tubes
    oesophagus: Tubes
    bronchus_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    hila: tuple[tuple[float, float, float], tuple[float, float, float]]


def mediastinum(anat: Anatomy, top_w: float, step: float) -> Mediastinum:
    """Trachea, main bronchi, aorta, vena cava, pulmonary arteries and oesophagus."""
    w = anat.w_at
    a, b, cv = anat.cavity_a, anat.cavity_b, anat.cavity_v
    tv, sv = anat.trachea_v, anat.spine_v
    carina = (0.0, tv + 2.0, w(0.7))
    right_end = (-0.28 * a, tv + 10.0, w(0.6))
    left_end = (0.32 * a, tv + 14.0, w(0.57))
    trachea = Tubes.join(
        [
            _tube([(0.0, tv, top_w + 20.0), (0.0, tv, w(0.85)), carina], [9.0, 9.0, 8.5], step),
            _tube([carina, right_end], [7.5, 6.5], step),
            _tube([carina, left_end], [6.5, 5.5], step),
        ]
    )
    aorta = _tube(
        [
            (-6.0, cv - 0.25 * b, w(0.32)),
            (-6.0, cv - 0.32 * b, w(0.72)),
            (8.0, tv - 22.0, w(0.8)),
            (24.0, tv + 2.0, w(0.8)),
            (24.0, sv - 14.0, w(0.72)),
            (12.0, sv - 18.0, w(-0.2)),
        ],
        [14.0, 14.0, 13.0, 12.0, 11.5, 11.0],
        step,
    )
    svc = _tube(
        [(-28.0, cv - 0.2 * b, w(0.42)), (-26.0, cv - 0.22 * b, top_w + 20.0)], [9, 9], step
    )
    trunk_top = (18.0, cv - 0.22 * b, w(0.6))
    right_hilum = (-0.33 * a, cv + 0.02 * b, w(0.58))
    left_hilum = (0.36 * a, cv + 0.04 * b, w(0.6))
    arteries = Tubes.join(
        [
            _tube([(16.0, cv - 0.5 * b, w(0.42)), trunk_top], [13.0, 13.0], step),
            _tube([trunk_top, (0.0, tv + 16.0, w(0.6)), right_hilum], [11, 10, 9], step),
            _tube([trunk_top, left_hilum], [10.0, 9.0], step),
        ]
    )
    oesophagus = _tube([(4.0, sv - 27.0, top_w + 20.0), (6.0, sv - 27.0, w(-0.2))], [7, 7], step)
    return Mediastinum(
        trachea=trachea,
        vessels=Tubes.join([aorta, svc, arteries]),
        aorta=aorta,
        oesophagus=oesophagus,
        bronchus_ends=(right_end, left_end),
        hila=(right_hilum, left_hilum),
    )


def clavicles(anat: Anatomy, step: float) -> Tubes:
    """Both collar bones: from the top of the sternum, curving forwards, out to the shoulders."""
    front = anat.cavity_v - anat.cavity_b - 8.0
    parts = []
    for s in (-1.0, 1.0):
        nodes = [
            (s * 20.0, front + 4.0, anat.w_at(0.97)),
            (s * 0.45 * anat.body_a, front - 6.0, anat.w_at(1.01)),
            (s * 0.85 * anat.body_a, anat.cavity_v - 0.25 * anat.cavity_b, anat.w_at(1.05)),
        ]
        parts.append(_tube(nodes, [7.0, 5.5, 6.5], step))
    return Tubes.join(parts)


def wall_plaques(rng: np.random.Generator, vessel: Tubes, count: int) -> Tubes:
    """Small calcified plaques (balls, mm) on the wall of a vessel, at random places."""
    if count == 0:
        return Tubes(np.zeros((0, 3)), np.zeros(0))
    pick = rng.choice(len(vessel.radii), size=count)
    outward = _unit(rng.normal(size=(count, 3)) * np.array([1.0, 1.0, 0.3]))
    centres = vessel.points[pick] + outward * (0.9 * vessel.radii[pick])[:, None]
    return Tubes(centres, rng.uniform(1.0, 2.5, count))


@dataclass
class _Branches:
    """A generation of tree branches (arrays over branches)."""

    start: Points
    direction: Points
    length: npt.NDArray[np.float64]
    radius: npt.NDArray[np.float64]
    side: npt.NDArray[np.int64]


def _unit(x: Points) -> Points:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Roots:
    """Where trees start: points (n, 3) mm, unit directions (n, 3), radii (n,) mm, sides (n,)."""

    start: Points
    direction: Points
    radius: npt.NDArray[np.float64]
    side: npt.NDArray[np.int64]

    @classmethod
    def join(cls, parts: list[Roots]) -> Roots:
        """All roots of ``parts``."""
        return cls(
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.direction for p in parts]),
            np.concatenate([p.radius for p in parts]),
            np.concatenate([p.side for p in parts]),
        )


def hilar_roots(hilum: tuple[float, float, float], side: int, radius: float) -> Roots:
    """Main branches out of a hilum: up, down, forwards, backwards and sideways."""
    s = -1.0 if side == RIGHT else 1.0
    dirs = [
        (0.3 * s, -1.0, 0.4),
        (0.4 * s, -1.0, -0.5),
        (0.35 * s, 0.1, 1.0),
        (0.5 * s, -0.6, 0.8),
        (s, -0.7, 0.15),
        (s, 0.2, 0.3),
        (s, 0.6, -0.1),
        (0.3 * s, 0.8, -0.6),
        (0.45 * s, 0.55, -1.0),
        (0.6 * s, -0.45, -1.0),
    ]
    d = _unit(np.asarray(dirs, dtype=np.float64))
    n = len(d)
    return Roots(np.repeat([hilum], n, axis=0), d, np.full(n, radius), np.full(n, side))


def lobar_trunks(
    anat: Anatomy, hilum: tuple[float, float, float], side: int
) -> list[npt.NDArray[np.float64]]:
    """Polylines (3 nodes, mm) from a hilum to the lung base, apex and front.

    Side branches all along them reach the parts of the lung far from the hilum.
    """
    s = -1.0 if side == RIGHT else 1.0
    a, b, cv = anat.cavity_a, anat.cavity_b, anat.cavity_v
    base_u, base_v = s * 0.5 * a, cv + 0.4 * b
    base_t = float(diaphragm_t(anat, base_u, base_v, side)) + 0.05
    ends = [
        (base_u, base_v, anat.w_at(base_t)),
        (s * 0.4 * a, cv + 0.1 * b, anat.w_at(0.88)),
        (s * 0.6 * a, cv - 0.55 * b, anat.w_at(0.42)),
    ]
    h = np.asarray(hilum, dtype=np.float64)
    trunks = []
    for end in ends:
        e = np.asarray(end)
        bend = 0.5 * (h + e) + np.array([s * 12.0, 0.0, 0.0])  # bow out to the side
        trunks.append(np.stack([h, bend, e]))
    return trunks


def trunk_roots(
    rng: np.random.Generator,
    trunk: npt.NDArray[np.float64],
    side: int,
    radius: tuple[float, float],
    count: int,
) -> Roots:
    """Side branches leaving a trunk at ``count`` points, in random directions across it."""
    frac = np.linspace(0.25, 0.95, count)
    seg_len = np.linalg.norm(np.diff(trunk, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(seg_len)]) / seg_len.sum()
    points = np.stack([np.interp(frac, along, trunk[:, k]) for k in range(3)], axis=1)
    points = np.repeat(points, 2, axis=0)
    axis = _unit(trunk[-1] - trunk[0])
    d = rng.normal(size=(len(points), 3))
    d = _unit(d - 0.6 * (d @ axis)[:, None] * axis + 0.5 * axis)
    r = np.repeat(radius[0] + frac * (radius[1] - radius[0]), 2) * 0.75
    return Roots(points, d, r, np.full(len(points), side))


def branching_tree(
    anat: Anatomy,
    rng: np.random.Generator,
    roots: Roots,
    hila: dict[int, npt.NDArray[np.float64]],
    min_radius: float,
    length_per_radius: tuple[float, float],
) -> tuple[Points, Points, npt.NDArray[np.float64]]:
    """Grow binary trees from ``roots`` until branches are thinner than ``min_radius`` (mm).

    Each fork splits a branch into a larger child (deviating 10-30 degrees) and a smaller one
    (25-55 degrees), both pulled slightly away from the hilum of their side so the tree spreads
    through the lung; a branch that would leave its lung is shortened, or dropped. Returns
    segment starts, ends (n, 3) and radii (n,).
    """
    n = len(roots.radius)
    radius = roots.radius * rng.uniform(0.8, 1.0, n)
    gen = _Branches(
        roots.start,
        roots.direction,
        radius * rng.uniform(*length_per_radius, n) * 1.3,
        radius,
        roots.side,
    )
    seg_start, seg_end, seg_r = [], [], []
    first = True
    while len(gen.radius):
        gen = gen if first else _keep_inside(anat, gen)
        first = False
        end = gen.start + gen.direction * gen.length[:, None]
        seg_start.append(gen.start)
        seg_end.append(end)
        seg_r.append(gen.radius)
        gen = _fork(rng, gen, end, hila, min_radius, length_per_radius)
    return np.concatenate(seg_start), np.concatenate(seg_end), np.concatenate(seg_r)


def _inside_own_lung(
    anat: Anatomy, points: Points, side: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    u, v, w = points.T
    right, left = lung_depths(anat, u, v, w)
    return np.where(side == RIGHT, right > 0, left > 0)


def _keep_inside(anat: Anatomy, gen: _Branches) -> _Branches:
    """Shorten branches whose end leaves their lung; drop those that still leave it."""
    length = gen.length.copy()
    ok = np.zeros(len(length), dtype=bool)
    for scale in (1.0, 0.6, 0.35):
        trial = ~ok
        end = gen.start + gen.direction * (length * scale)[:, None]
        good = trial & _inside_own_lung(anat, end, gen.side)
        length[good] *= scale
        ok |= good
    return _Branches(gen.start[ok], gen.direction[ok], length[ok], gen.radius[ok], gen.side[ok])


def _fork(
    rng: np.random.Generator,
    gen: _Branches,
    end: Points,
    hila: dict[int, npt.NDArray[np.float64]],
    min_radius: float,
    length_per_radius: tuple[float, float],
) -> _Branches:
    """Two children per branch, thinner (Murray-like) and turned apart in a random plane."""
    n = len(gen.radius)
    if n == 0:
        return gen
    axis = rng.normal(size=(n, 3))
    axis = _unit(axis - (axis * gen.direction).sum(1, keepdims=True) * gen.direction)
    hilum = np.where((gen.side == RIGHT)[:, None], hila[RIGHT], hila[LEFT])
    away = _unit(end - hilum + 1e-6)
    children = []
    for ratio, angle, turn in (
        (rng.uniform(0.78, 0.9, n), rng.uniform(10, 30, n), 1.0),
        (rng.uniform(0.55, 0.78, n), rng.uniform(25, 55, n), -1.0),
    ):
        a = np.radians(angle)[:, None]
        d = _unit(np.cos(a) * gen.direction + turn * np.sin(a) * axis + 0.25 * away)
        r = gen.radius * ratio
        length = r * rng.uniform(*length_per_radius, n)
        children.append(_Branches(end, d, length, r, gen.side))
    keep = [c.radius >= min_radius for c in children]
    return _Branches(
        np.concatenate([c.start[k] for c, k in zip(children, keep, strict=True)]),
        np.concatenate([c.direction[k] for c, k in zip(children, keep, strict=True)]),
        np.concatenate([c.length[k] for c, k in zip(children, keep, strict=True)]),
        np.concatenate([c.radius[k] for c, k in zip(children, keep, strict=True)]),
        np.concatenate([c.side[k] for c, k in zip(children, keep, strict=True)]),
    )


def tree_tubes(
    segments: tuple[Points, Points, npt.NDArray[np.float64]], step: float, taper: float = 0.85
) -> Tubes:
    """Centreline points of tree segments, each tapering to ``taper`` of its radius."""
    start, end, r = segments
    points, radii = sample_segments(start, end, r, r * taper, step)
    return Tubes(points, radii)
