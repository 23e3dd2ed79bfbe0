"""The working grid a phantom is drawn on, and the tools that draw on it.

Anatomy is drawn on a *working grid* in patient coordinates (mm, relative to the volume centre):
``u`` towards the patient's left, ``v`` towards the back (posterior), ``w`` towards the head. The
working grid is at most as fine as about 1.5 mm in-plane (a 512 matrix is drawn at 256 and
upsampled 2x) and splits each thick output slice into sub-slices that are averaged afterwards, as a
scanner integrates over the slice thickness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

#: In-plane working spacing below which the grid is drawn at half resolution and upsampled (mm).
_FINEST_WORKING_MM = 1.2
#: Thickest working sub-slice (mm): thicker output slices are averaged from several sub-slices.
_THICKEST_SUBSLICE_MM = 2.5
#: Most (point, offset) pairs handled at once when splatting tubes (bounds memory).
_SPLAT_CHUNK = 4_000_000


@dataclass(frozen=True)
class Grid:
    """A regular grid of voxel centres in patient coordinates (u left, v posterior, w superior).

    Parameters
    ----------
    shape
        Voxels along (u, v, w).
    spacing
        Voxel size in mm along (u, v, w).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def axis(self, a: int) -> Array:
        """Voxel-centre coordinates (mm) along axis ``a``, centred on 0."""
        n = self.shape[a]
        return ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * self.spacing[a]).astype(np.float32)

    def coords(self) -> tuple[Array, Array, Array]:
        """Broadcastable coordinate arrays u (n, 1, 1), v (1, n, 1), w (1, 1, n) in mm."""
        u, v, w = (self.axis(a) for a in range(3))
        return u[:, None, None], v[None, :, None], w[None, None, :]

    def index_of(self, points: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Fractional voxel indices of points (n, 3) given in mm."""
        sp = np.asarray(self.spacing)
        centre = (np.asarray(self.shape) - 1) / 2
        return np.asarray(points, dtype=np.float64) / sp + centre


@dataclass(frozen=True)
class Sampling:
    """How the working grid maps onto the output grid.

    Parameters
    ----------
    output
        The output grid.
    inplane_factor
        Output voxels per working voxel along u and v (1 or 2).
    subslices
        Working sub-slices averaged into one output slice.
    """

    output: Grid
    inplane_factor: int
    subslices: int

    @classmethod
    def for_output(cls, output: Grid) -> Sampling:
        """Choose the working resolution for an output grid."""
        nu, nv, _ = output.shape
        even = nu % 2 == 0 and nv % 2 == 0
        factor = 2 if even and min(output.spacing[:2]) < _FINEST_WORKING_MM else 1
        subslices = max(1, int(np.ceil(output.spacing[2] / _THICKEST_SUBSLICE_MM - 1e-6)))
        return cls(output, factor, subslices)

    @property
    def working(self) -> Grid:
        """The grid anatomy is drawn on."""
        nu, nv, nw = self.output.shape
        su, sv, sw = self.output.spacing
        f, m = self.inplane_factor, self.subslices
        return Grid((nu // f, nv // f, nw * m), (su * f, sv * f, sw / m))

    def to_output(self, values: Array) -> Array:
        """Average sub-slices and upsample in-plane (linear), working grid -> output grid."""
        nu, nv, nw = values.shape
        out = values.reshape(nu, nv, nw // self.subslices, self.subslices).mean(axis=3)
        if self.inplane_factor == 2:
            out = upsample2(upsample2(out, 0), 1)
        return out.astype(np.float32, copy=False)

    def to_output_sparse(self, values: Array) -> Array:
        """:meth:`to_output` for a field that is zero outside a small region (masks, lesions).

        Only the bounding box of the non-zero values (plus a zero margin) is resampled.
        """
        out = np.zeros(self.output.shape, dtype=np.float32)
        nonzero = [
            np.flatnonzero(values.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)
        ]
        if any(len(n) == 0 for n in nonzero):
            return out
        m, f = self.subslices, self.inplane_factor
        lo = [max(0, int(n[0]) - 1) for n in nonzero[:2]] + [int(nonzero[2][0]) // m * m]
        hi = [min(values.shape[a], int(nonzero[a][-1]) + 2) for a in range(2)]
        hi.append(-(-(int(nonzero[2][-1]) + 1) // m) * m)
        crop = values[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        out[lo[0] * f : hi[0] * f, lo[1] * f : hi[1] * f, lo[2] // m : hi[2] // m] = self.to_output(
            np.ascontiguousarray(crop)
        )
        return out


def upsample2(a: Array, axis: int) -> Array:
    """Double ``a`` along ``axis`` by linear interpolation, voxel edges aligned (edges clamped)."""
    a = np.moveaxis(a, axis, 0)
    prev = np.concatenate([a[:1], a[:-1]])
    nxt = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0],) + a.shape[1:], dtype=np.float32)
    out[0::2] = 0.75 * a + 0.25 * prev
    out[1::2] = 0.75 * a + 0.25 * nxt
    return np.moveaxis(out, 0, axis)


def sample_polyline(
    nodes: npt.NDArray[np.floating], radii: npt.NDArray[np.floating], step_mm: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Points along a polyline (n, 3) with linearly interpolated radii, about ``step_mm`` apart."""
    nodes = np.asarray(nodes, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    return sample_segments(nodes[:-1], nodes[1:], radii[:-1], radii[1:], step_mm)


def sample_segments(
    start: npt.NDArray[np.floating],
    end: npt.NDArray[np.floating],
    r_start: npt.NDArray[np.floating],
    r_end: npt.NDArray[np.floating],
    step_mm: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Points along many segments (n, 3) -> (n, 3), spaced at most ``step_mm`` or 0.4 radius.

    Spheres of the tube's radius centred on these points overlap enough that their union is a
    smooth tube (ridges under 2 % of the radius).
    """
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    r_start, r_end = np.asarray(r_start, np.float64), np.asarray(r_end, np.float64)
    length = np.linalg.norm(end - start, axis=1)
    step = np.maximum(step_mm, 0.4 * np.minimum(r_start, r_end))
    counts = np.maximum(1, np.ceil(length / step).astype(np.int64)) + 1
    seg = np.repeat(np.arange(len(start)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    frac = (np.arange(counts.sum()) - first) / np.repeat(counts - 1, counts)
    points = start[seg] + frac[:, None] * (end[seg] - start[seg])
    radii = r_start[seg] + frac * (r_end[seg] - r_start[seg])
    return points, radii


def splat_tubes(
    grid: Grid, points: npt.NDArray[np.floating], radii: npt.NDArray[np.floating]
) -> Array:
    """Fraction (0..1) of each voxel covered by the union of balls (centres mm, radii mm).

    Sampled densely along a centreline (:func:`sample_segments`), the balls form a tube; the
    boundary is ramped over one voxel so thin vessels keep their partial-volume look.
    """
    if len(points) == 0:
        return np.zeros(grid.shape, dtype=np.float32)
    sp = np.asarray(grid.spacing)
    idx = grid.index_of(points)
    r = np.asarray(radii, dtype=np.float64)
    ramp = float(np.mean(sp))
    reach = np.ceil((r[:, None] + ramp) / sp).astype(np.int64)  # stencil half-width per axis
    # Draw on a grid padded by the widest stencil, so no index needs a bounds check.
    pad = reach.max(axis=0)
    base = np.rint(idx).astype(np.int64)
    keep = np.all((base >= -pad) & (base < np.asarray(grid.shape) + pad), axis=1)
    padded = np.zeros(tuple(np.asarray(grid.shape) + 2 * pad), dtype=np.float32)
    keys, inverse = np.unique(reach[keep], axis=0, return_inverse=True)
    stamp = _Stamp(padded, pad, sp, ramp)
    for group, key in enumerate(keys):
        members = np.flatnonzero(keep)[inverse.ravel() == group]
        stamp.draw(idx[members], base[members], r[members], key)
    crop = tuple(slice(p, p + n) for p, n in zip(pad, grid.shape, strict=True))
    return np.ascontiguousarray(padded[crop])


@dataclass
class _Stamp:
    """Draws balls into a padded grid, keeping the largest coverage of each voxel."""

    padded: Array
    pad: npt.NDArray[np.int64]
    spacing: npt.NDArray[np.float64]
    ramp: float

    def draw(
        self,
        idx: npt.NDArray[np.float64],
        base: npt.NDArray[np.int64],
        radii: npt.NDArray[np.float64],
        reach: npt.NDArray[np.int64],
    ) -> None:
        """Balls whose stencil half-widths are all ``reach`` (voxels per axis)."""
        axes = [np.arange(-k, k + 1) for k in reach]
        offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        strides = np.asarray(self.padded.strides) // self.padded.itemsize
        offset_lin = offsets @ strides
        base_lin = (base + self.pad) @ strides
        flat = self.padded.reshape(-1)
        per_chunk = max(1, _SPLAT_CHUNK // len(offsets))
        for lo in range(0, len(idx), per_chunk):
            part = slice(lo, lo + per_chunk)
            d2 = np.zeros((len(idx[part]), len(offsets)), dtype=np.float32)
            for a in range(3):
                delta = (base[part, a] - idx[part, a]).astype(np.float32)
                d2 += ((delta[:, None] + offsets[None, :, a]) * np.float32(self.spacing[a])) ** 2
            frac = (radii[part, None].astype(np.float32) - np.sqrt(d2)) / np.float32(self.ramp)
            frac += np.float32(0.5)
            hit = frac > 0
            lin = (base_lin[part, None] + offset_lin[None, :])[hit]
            np.maximum.at(flat, lin, np.minimum(frac[hit], np.float32(1.0)))
