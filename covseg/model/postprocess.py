"""Post-processing of lesion masks: the finalists' small-component and outside-lung removal."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]


def remove_small_components(mask: BoolArray, voxel_ml: float, min_ml: float) -> BoolArray:
    """Drop connected lesions (26-connectivity) smaller than ``min_ml`` millilitres."""
    if min_ml <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim))
    sizes_ml = np.bincount(labels.ravel(), minlength=n + 1) * voxel_ml
    keep = sizes_ml >= min_ml
    keep[0] = False
    return keep[labels]


def restrict_to_lung(
    mask: BoolArray, lung: npt.NDArray[np.generic], spacing: tuple[float, ...], dilation_mm: float
) -> BoolArray:
    """Drop lesion voxels farther than ``dilation_mm`` from the lung mask (mm, true distances)."""
    inside = np.asarray(lung) != 0
    if not inside.any():
        return np.zeros_like(mask)
    distance = ndimage.distance_transform_edt(~inside, sampling=spacing)
    return mask & (distance <= dilation_mm)


def postprocess(
    mask: BoolArray,
    spec: dict[str, Any],
    *,
    voxel_ml: float,
    spacing: tuple[float, ...],
    lung: npt.NDArray[np.generic] | None = None,
) -> BoolArray:
    """Apply the plan's ``postprocess`` section: outside-lung removal, then small components."""
    if spec.get("outside_lung") and lung is not None:
        mask = restrict_to_lung(mask, lung, spacing, float(spec["lung_dilation_mm"]))
    return remove_small_components(mask, voxel_ml, float(spec.get("min_component_ml", 0.0)))
