"""Validation of the metrics' inputs (done once, at the public boundary) and cropping."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]


def as_mask(name: str, array: npt.ArrayLike) -> Mask:
    """``array`` as a boolean mask, without a copy for bool and 1-byte 0/1 arrays.

    Raises
    ------
    ValueError
        If ``array`` is not 2D or 3D, holds NaN, or holds values other than 0 and 1.
    """
    mask = np.asarray(array)
    if mask.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D or 3D mask, got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind not in "uif":
        raise ValueError(f"{name}: expected a boolean or 0/1 numeric mask, got dtype {mask.dtype}")
    if mask.size == 0:
        return mask.astype(bool)
    low, high = mask.min(), mask.max()
    if mask.dtype.kind == "f" and (math.isnan(low) or math.isnan(high)):
        raise ValueError(f"{name}: mask contains NaN")
    if low < 0 or high > 1:
        raise ValueError(f"{name}: mask values must be 0 or 1, found values in [{low}, {high}]")
    if mask.dtype.kind == "f" and np.count_nonzero((mask != 0) & (mask != 1)):
        raise ValueError(f"{name}: mask values must be 0 or 1, found fractional values")
    if mask.dtype.itemsize == 1 and mask.dtype.kind in "ui":
        return mask.view(np.bool_)  # 0/1 bytes are valid booleans
    return mask != 0


def as_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """``spacing`` as a tuple of ``ndim`` positive finite floats (mm).

    Raises
    ------
    ValueError
        If the length differs from ``ndim`` or a value is not positive and finite.
    """
    values = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
    if len(values) != ndim:
        raise ValueError(f"spacing {values} has {len(values)} values, the masks have {ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing {values} must be positive and finite (mm)")
    return values


def as_pair(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float] | None = None
) -> tuple[Mask, Mask, tuple[float, ...]]:
    """Validated ``(pred, truth, spacing)``; spacing defaults to 1 mm per axis when ``None``.

    Raises
    ------
    ValueError
        On a shape mismatch, a non-binary mask or a bad spacing.
    """
    pred_mask = as_mask("pred", pred)
    truth_mask = as_mask("truth", truth)
    if pred_mask.shape != truth_mask.shape:
        raise ValueError(
            f"pred shape {pred_mask.shape} differs from truth shape {truth_mask.shape}"
        )
    ndim = truth_mask.ndim
    return pred_mask, truth_mask, as_spacing((1.0,) * ndim if spacing is None else spacing, ndim)


def as_tolerance(tolerance_mm: float) -> float:
    """``tolerance_mm`` checked to be finite and non-negative."""
    value = float(tolerance_mm)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    return value


def _extent(mask: Mask) -> list[tuple[int, int]] | None:
    """Per-axis ``(first, last + 1)`` index of the foreground, or ``None`` when empty."""
    extent = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        extent.append((int(hits[0]), int(hits[-1]) + 1))
    return extent


def crop_to_union(pred: Mask, truth: Mask) -> tuple[Mask, Mask]:
    """Both masks cropped to the bounding box of their union (views, no copy).

    All metrics here are invariant to removing background outside that box, and the surface
    computations pad the crop themselves. Two empty masks give two empty ``(0, ...)`` crops.
    """
    boxes = [box for box in (_extent(pred), _extent(truth)) if box is not None]
    if not boxes:
        empty = (slice(0, 0),) * pred.ndim
        return pred[empty], truth[empty]
    window = tuple(
        slice(min(box[axis][0] for box in boxes), max(box[axis][1] for box in boxes))
        for axis in range(pred.ndim)
    )
    return pred[window], truth[window]
