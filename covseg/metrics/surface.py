"""Surface-distance metrics: Normalized Surface Dice, Hausdorff 95, average symmetric distance.

Surfaces are the area-weighted surfels of :mod:`covseg.metrics.surfels` (Nikolov et al. 2018),
the definition of DeepMind's ``surface-distance`` and of MONAI's ``compute_surface_dice`` with
``use_subvoxels=True``. The distance of a surfel to the other surface is the Euclidean distance
in mm from its corner to the nearest surface corner of the other mask.

Only the surface corners matter, so instead of a distance transform over the whole volume (the
references' approach) the nearest corners are found with a k-d tree over the surface corners of
the masks' common bounding box; the distances equal the exact Euclidean distance transform's.
Only when the surfels fill the box (speckle noise) is a distance transform over the box faster,
and used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from covseg.metrics._inputs import Mask, as_pair, as_tolerance, crop_to_union
from covseg.metrics.surfels import corner_codes, measure_table

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

# Above one surfel per this many corners of the box, search by distance transform, not k-d tree
# (measured: a tree query costs about as much as 8 voxels of feature transform).
_DENSE_SURFACE_RATIO = 8


@dataclass(frozen=True, eq=False)
class SurfaceDistances:
    """Each surfel's area and distance to the other surface, for both masks.

    Attributes
    ----------
    truth_to_pred, truth_areas
        Distance in mm from each truth surfel to the predicted surface (``inf`` when the
        prediction is empty) and the surfel's area in mm^2 (3D) or length in mm (2D).
    pred_to_truth, pred_areas
        The same for the predicted surfels.
    """

    truth_to_pred: FloatArray
    truth_areas: FloatArray
    pred_to_truth: FloatArray
    pred_areas: FloatArray

    @property
    def _empty(self) -> tuple[bool, bool]:
        return self.truth_areas.size == 0, self.pred_areas.size == 0

    def surface_dice(self, tolerance_mm: float = 1.0) -> float:
        """Normalized Surface Dice: the share of both surfaces within ``tolerance_mm`` of the other.

        1.0 when both masks are empty, 0.0 when exactly one is.
        """
        if all(self._empty):
            return 1.0
        close = np.sum(self.truth_areas[self.truth_to_pred <= tolerance_mm]) + np.sum(
            self.pred_areas[self.pred_to_truth <= tolerance_mm]
        )
        return float(close / (np.sum(self.truth_areas) + np.sum(self.pred_areas)))

    def hausdorff(self, percent: float = 95.0) -> float:
        """Robust Hausdorff distance in mm: the larger of the two directed area percentiles.

        The directed ``percent`` percentile is the smallest surfel distance whose cumulated area
        (surfels sorted by distance) reaches ``percent`` % of the surface. 0.0 when both masks
        are empty, ``inf`` when exactly one is.
        """
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percent must lie in [0, 100], got {percent}")
        if all(self._empty):
            return 0.0
        if any(self._empty):
            return float("inf")
        return max(
            _area_percentile(self.truth_to_pred, self.truth_areas, percent),
            _area_percentile(self.pred_to_truth, self.pred_areas, percent),
        )

    def average_symmetric(self) -> float:
        """Average symmetric surface distance in mm, area-weighted over both surfaces.

        0.0 when both masks are empty, ``inf`` when exactly one is.
        """
        if all(self._empty):
            return 0.0
        if any(self._empty):
            return float("inf")
        total = np.sum(self.truth_areas * self.truth_to_pred) + np.sum(
            self.pred_areas * self.pred_to_truth
        )
        return float(total / (np.sum(self.truth_areas) + np.sum(self.pred_areas)))


def _area_percentile(distances: FloatArray, areas: FloatArray, percent: float) -> float:
    # Sorted by (distance, area) and cut where the cumulated area fraction first reaches the
    # percentile: the reference's exact rule, so that values agree to the last bit.
    order = np.lexsort((areas, distances))
    cumulated = np.cumsum(areas[order]) / np.sum(areas[order])
    index = int(np.searchsorted(cumulated, percent / 100.0))
    return float(distances[order][min(index, distances.size - 1)])


def _surfels(mask: Mask, table: FloatArray) -> tuple[IndexArray, FloatArray]:
    """Corner indices (N, ndim) and areas (N,) of the surfels of ``mask``."""
    codes = corner_codes(mask).ravel()
    # Codes 1 .. full-1 are surface corners; shifting by one makes that a single comparison.
    flat = np.flatnonzero((codes - np.uint8(1)) < np.uint8(len(table) - 2))
    corners = np.stack(np.unravel_index(flat, tuple(n + 1 for n in mask.shape)), axis=1)
    return corners, table[codes[flat]]


def _nearest_corners(
    points: IndexArray, targets: IndexArray, spacing: tuple[float, ...], grid: tuple[int, ...]
) -> IndexArray:
    """For each corner in ``points``, the nearest corner in ``targets`` (in mm)."""
    if points.shape[0] * _DENSE_SURFACE_RATIO > np.prod(grid):
        # Surfels fill the box (a speckled mask): one feature transform over the corner grid
        # beats a tree search from every surfel.
        outside = np.ones(grid, bool)
        outside[tuple(targets.T)] = False
        features = ndimage.distance_transform_edt(
            outside, sampling=spacing, return_distances=False, return_indices=True
        )
        return np.stack([axis[tuple(points.T)] for axis in features], axis=1)
    scale = np.asarray(spacing)
    # An unbalanced tree with larger leaves builds and queries fastest on surface points.
    tree = cKDTree(targets * scale, leafsize=32, balanced_tree=False)
    _, nearest = tree.query(points * scale)
    return targets[nearest]


def _nearest_distances(
    points: IndexArray, targets: IndexArray, spacing: tuple[float, ...], grid: tuple[int, ...]
) -> FloatArray:
    """Distance in mm from each corner in ``points`` to its nearest corner in ``targets``."""
    if targets.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    if points.shape[0] == 0:
        return np.zeros(0)
    nearest = _nearest_corners(points, targets, spacing, grid)
    # Computed from the integer offsets as scipy's distance_transform_edt does, so that
    # distances equal the distance transform's to the last bit (ties at the tolerance matter).
    offsets = (nearest - points).astype(np.float64) * np.asarray(spacing)
    squared = offsets[:, 0] ** 2
    for axis in range(1, points.shape[1]):
        squared += offsets[:, axis] ** 2
    return np.asarray(np.sqrt(squared))


def surface_distances_unchecked(
    pred: Mask, truth: Mask, spacing: tuple[float, ...]
) -> SurfaceDistances:
    """:func:`surface_distances` for validated inputs (best cropped to the union's bounding box)."""
    table = measure_table(spacing)
    grid = tuple(n + 1 for n in truth.shape)  # the corner grid
    pred_points, pred_areas = _surfels(pred, table)
    truth_points, truth_areas = _surfels(truth, table)
    return SurfaceDistances(
        truth_to_pred=_nearest_distances(truth_points, pred_points, spacing, grid),
        truth_areas=truth_areas,
        pred_to_truth=_nearest_distances(pred_points, truth_points, spacing, grid),
        pred_areas=pred_areas,
    )


def surface_distances(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float]
) -> SurfaceDistances:
    """Surfel areas and distances of both masks, to derive several surface metrics at once.

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.

    Returns
    -------
    SurfaceDistances

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((8, 8, 8), bool); truth[2:6, 2:6, 2:6] = True
    >>> sd = surface_distances(truth, truth, (1.0, 1.0, 1.0))
    >>> sd.surface_dice(1.0), sd.hausdorff(95), sd.average_symmetric()
    (1.0, 0.0, 0.0)
    """
    pred_mask, truth_mask, checked = as_pair(pred, truth, spacing)
    return surface_distances_unchecked(*crop_to_union(pred_mask, truth_mask), checked)


def normalized_surface_dice(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float], tolerance_mm: float = 1.0
) -> float:
    r"""Normalized Surface Dice (NSD) at a tolerance in mm.

    .. math:: \mathrm{NSD}_\tau = \frac{|S_T \cap B_\tau(S_P)| + |S_P \cap B_\tau(S_T)|}
              {|S_T| + |S_P|}

    where :math:`|\cdot|` is surface area measured with surfels and :math:`B_\tau(S)` the
    points within :math:`\tau` mm of surface :math:`S`.

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.
    tolerance_mm
        Largest surface deviation in mm still counted as correct.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    tolerance = as_tolerance(tolerance_mm)
    return surface_distances(pred, truth, spacing).surface_dice(tolerance)


def hausdorff_distance_95(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float]
) -> float:
    """95th-percentile Hausdorff distance in mm (surfel-area weighted, symmetric maximum).

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.

    Returns
    -------
    float
        Distance in mm; 0.0 when both masks are empty, ``inf`` when exactly one is.
    """
    return surface_distances(pred, truth, spacing).hausdorff(95.0)


def average_symmetric_surface_distance(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float]
) -> float:
    r"""Average symmetric surface distance (ASSD) in mm.

    .. math:: \mathrm{ASSD} = \frac{\int_{S_T} d(s, S_P)\,ds + \int_{S_P} d(s, S_T)\,ds}
              {|S_T| + |S_P|}

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.

    Returns
    -------
    float
        Distance in mm; 0.0 when both masks are empty, ``inf`` when exactly one is.
    """
    return surface_distances(pred, truth, spacing).average_symmetric()
