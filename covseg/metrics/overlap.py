"""Volume-overlap metrics: Dice, lesion volume in mL, Normalized Absolute Volume Error."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from covseg.metrics._inputs import Mask, as_mask, as_pair, as_spacing


def dice_unchecked(pred: Mask, truth: Mask) -> float:
    """:func:`dice` for validated boolean masks of the same shape."""
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(pred & truth) / total)


def nave_from_volumes(pred_ml: float, truth_ml: float) -> float:
    """:func:`normalized_absolute_volume_error` from the two volumes (any common unit)."""
    if truth_ml == 0:
        return 0.0 if pred_ml == 0 else math.inf
    return abs(pred_ml - truth_ml) / truth_ml


def volume_ml_unchecked(mask: Mask, spacing: tuple[float, ...]) -> float:
    """:func:`volume_ml` for a validated boolean mask and spacing."""
    return float(np.count_nonzero(mask) * math.prod(spacing) / 1000.0)


def dice(pred: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    r"""Dice similarity coefficient of two masks.

    .. math:: \mathrm{Dice} = \frac{2\,|P \cap T|}{|P| + |T|}

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Examples
    --------
    >>> import numpy as np
    >>> dice(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]]))
    0.5
    """
    pred_mask, truth_mask, _ = as_pair(pred, truth)
    return dice_unchecked(pred_mask, truth_mask)


def volume_ml(mask: npt.ArrayLike, spacing: Sequence[float]) -> float:
    """Volume of a 3D mask in mL (area in cm^2 for a 2D mask).

    Parameters
    ----------
    mask
        2D or 3D mask, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.
    """
    checked = as_mask("mask", mask)
    return volume_ml_unchecked(checked, as_spacing(spacing, checked.ndim))


def normalized_absolute_volume_error(
    pred: npt.ArrayLike, truth: npt.ArrayLike, spacing: Sequence[float]
) -> float:
    r"""Normalized Absolute Volume Error, the COVID-19-20 volume metric.

    .. math:: \mathrm{NAVE} = \frac{|V_P - V_T|}{V_T}

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis (cancels out; checked for consistency).

    Returns
    -------
    float
        >= 0; 0.0 when both masks are empty, ``inf`` when only the truth is empty, 1.0 when only
        the prediction is empty.
    """
    pred_mask, truth_mask, _ = as_pair(pred, truth, spacing)
    return nave_from_volumes(int(np.count_nonzero(pred_mask)), int(np.count_nonzero(truth_mask)))
