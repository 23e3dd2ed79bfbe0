"""COVID-19-like lesions: peripheral, irregular ground-glass opacities and consolidations.

A lesion is an ellipsoid envelope, flattened against the pleura and roughened by smooth random
waves, centred just under the pleura (most often in the lower, posterior, outer lung, as in
COVID-19 pneumonia) and clipped to the lungs. Ground glass (textured, sometimes with the fine net
of "crazy paving") fades in over its edge; a "mixed" lesion has a consolidated core, and a
"consolidation" is solid almost to its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from covseg.phantom._grid import Array, Grid

#: Lesion volumes are drawn log-uniformly in this range (mL).
VOLUME_RANGE_ML = (1.0, 250.0)
#: Lesion fraction at and above which a voxel belongs to the lesion mask.
MASK_LEVEL = 0.5


@dataclass(frozen=True)
class LesionField:
    """Lesions drawn on the working grid.

    Attributes
    ----------
    fraction
        How much of each voxel is lesion (0..1); the mask is ``fraction >= MASK_LEVEL``.
    hu
        Lesion density where ``fraction > 0`` (HU).
    """

    fraction: Array
    hu: Array


def _waves(
    rng: np.random.Generator, coords: tuple[Array, Array, Array], wavelength: float, count: int
) -> Array:
    """Smooth random field (about unit s.d.): a sum of plane waves of about ``wavelength`` mm."""
    out: Array = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), dtype=np.float32)
    for _ in range(count):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4) * np.linalg.norm(k))
        shift = np.complex64(np.exp(1j * rng.uniform(0, 2 * np.pi)))
        # cos(k.x + phase) = Re(e^{i k_u u} e^{i k_v v} e^{i k_w w} e^{i phase}): one 3D product.
        e = [np.exp(1j * k[a] * coords[a]).astype(np.complex64) for a in range(3)]
        out += ((e[0] * e[1]) * (e[2] * shift)).real
    return out * np.float32(np.sqrt(2.0 / count))


@dataclass(frozen=True)
class _Candidates:
    """Lung points where a lesion may be centred (coarse grid).

    Attributes
    ----------
    points
        Positions (n, 3) in mm.
    depth
        Distance under the pleura (mm).
    normal
        Unit vectors (n, 3) pointing from the nearest pleura into the lung.
    weight
        Relative chance of a lesion.
    """

    points: npt.NDArray[np.float64]
    depth: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]


def _candidates(grid: Grid, lung: npt.NDArray[np.bool_], preference: Array) -> _Candidates:
    step = [max(1, int(np.ceil(4.0 / s))) for s in grid.spacing]
    coarse = lung[:: step[0], :: step[1], :: step[2]]
    spacing = [s * k for s, k in zip(grid.spacing, step, strict=True)]
    depth = ndimage.distance_transform_edt(coarse, sampling=spacing)
    idx = np.argwhere(coarse)
    at = tuple(idx.T)
    gradient = np.stack([_gradient(depth, a, spacing[a])[at] for a in range(3)], axis=1)
    normal = gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-6)
    full = idx * np.asarray(step)
    points = (full - (np.asarray(grid.shape) - 1) / 2) * np.asarray(grid.spacing)
    weight = np.broadcast_to(preference, grid.shape)[tuple(full.T)].astype(np.float64)
    return _Candidates(points, depth[at], normal, weight)


def _gradient(
    values: npt.NDArray[np.float64], axis: int, spacing: float
) -> npt.NDArray[np.float64]:
    """Derivative along ``axis`` (0 where the array is a single voxel thick)."""
    if values.shape[axis] < 2:
        return np.zeros_like(values)
    return np.asarray(np.gradient(values, spacing, axis=axis))


def draw_lesions(
    rng: np.random.Generator,
    grid: Grid,
    lung: npt.NDArray[np.bool_],
    preference: Array,
    count: int,
) -> LesionField:
    """Draw ``count`` lesions inside ``lung`` (working-grid booleans).

    ``preference`` (broadcastable to the grid, > 0) weighs where lesions are centred.
    """
    fraction = np.zeros(grid.shape, dtype=np.float32)
    hu = np.zeros(grid.shape, dtype=np.float32)
    if count == 0 or not lung.any():
        return LesionField(fraction, hu)
    cand = _candidates(grid, lung, preference)
    for _ in range(count):
        volume = np.exp(rng.uniform(*np.log(VOLUME_RANGE_ML)))
        radius = (3 * volume * 1000 / (4 * np.pi)) ** (1 / 3)
        near = cand.depth <= max(4.0, 0.5 * radius)  # subpleural: touching the pleura, or nearly
        w = cand.weight * near if near.any() else cand.weight
        pick = rng.choice(len(w), p=w / w.sum())
        shape = _Shape.subpleural(rng, radius, cand.normal[pick])
        _draw_one(rng, grid, lung, cand.points[pick], shape, fraction, hu)
    return LesionField(fraction, hu)


def _box(grid: Grid, centre: npt.NDArray[np.float64], reach: float) -> tuple[slice, slice, slice]:
    lo = np.floor(grid.index_of((centre - reach)[None])[0]).astype(int)
    hi = np.ceil(grid.index_of((centre + reach)[None])[0]).astype(int) + 1
    lo = np.clip(lo, 0, grid.shape)
    hi = np.clip(hi, 0, grid.shape)
    return slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])


@dataclass(frozen=True)
class _Shape:
    """An ellipsoid: semi-axes (mm) along the columns of ``rotation``."""

    axes: npt.NDArray[np.float64]
    rotation: npt.NDArray[np.float64]

    @classmethod
    def subpleural(
        cls, rng: np.random.Generator, radius: float, normal: npt.NDArray[np.float64]
    ) -> _Shape:
        """A patch flattened against the pleura: thin along ``normal``, wide along the wall."""
        axes = np.array([rng.uniform(0.5, 0.85), rng.uniform(0.9, 1.6), rng.uniform(0.9, 1.6)])
        axes = radius * axes / np.prod(axes) ** (1 / 3)
        if not np.any(normal):
            normal = rng.normal(size=3)
        normal = normal / np.linalg.norm(normal)
        tangent = rng.normal(size=3)
        tangent -= tangent.dot(normal) * normal
        tangent /= np.linalg.norm(tangent)
        return cls(axes, np.stack([normal, tangent, np.cross(normal, tangent)], axis=1))


#: Satellite blobs of a lesion smaller than this share of its main body are left out (specks).
SPECK_SHARE = 0.03


def _without_specks(frac: Array, grid: Grid) -> Array:
    """``frac`` with the tiny islands of the masked part (>= MASK_LEVEL) set to zero.

    The rough edge of a lesion throws off a few voxel-sized islands that an annotator would not
    draw; larger satellites stay (COVID-19 lesions are often multifocal).
    """
    labels, count = ndimage.label(frac >= MASK_LEVEL)
    if count <= 1:
        return frac
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    small = sizes < max(SPECK_SHARE * sizes.max(), 0.05 / voxel_ml)
    small[0] = False
    return np.where(small[labels], np.float32(0.0), frac)


def _draw_one(
    rng: np.random.Generator,
    grid: Grid,
    lung: npt.NDArray[np.bool_],
    centre: npt.NDArray[np.float64],
    shape: _Shape,
    fraction: Array,
    hu: Array,
) -> None:
    """Add one lesion, keeping the denser lesion where two overlap."""
    axes, rotation = shape.axes, shape.rotation
    radius = float(np.prod(axes) ** (1 / 3))
    box = _box(grid, centre, 1.5 * axes.max())  # the level is negative beyond
    u, v, w = grid.coords()
    local = (u[box[0]] - centre[0], v[:, box[1]] - centre[1], w[:, :, box[2]] - centre[2])
    rotated = [sum(rotation[i, j] * local[i] for i in range(3)) / axes[j] for j in range(3)]
    envelope = 1.0 - sum(r**2 for r in rotated)
    rough = _waves(rng, local, 0.9 * radius, 10) + 0.5 * _waves(rng, local, 0.3 * radius, 8)
    level = envelope + 0.45 * rough
    frac = _without_specks(np.clip(level / 0.3, 0.0, 1.0) * lung[box], grid)
    kind = rng.choice(["ggo", "mixed", "consolidation"], p=[0.6, 0.3, 0.1])
    ggo = rng.uniform(-700.0, -380.0) + 45.0 * _waves(rng, local, 6.0, 6)
    if rng.random() < 0.35:  # crazy paving: thickened septa, a fine net over the ground glass
        ggo = ggo + 140.0 * (np.abs(_waves(rng, local, 10.0, 4)) < 0.22)
    if kind == "ggo":
        density = ggo
    else:
        start = 0.1 if kind == "consolidation" else rng.uniform(0.5, 0.8)
        solid = np.clip((level - start) / 0.25, 0.0, 1.0)
        density = ggo + solid * (rng.uniform(-90.0, 40.0) - ggo)
    denser = frac > fraction[box]
    fraction[box] = np.where(denser, frac, fraction[box])
    hu[box] = np.where(denser, density, hu[box])
