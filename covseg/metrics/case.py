"""All metrics of one case at once, sharing the validation, cropping and surface distances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from covseg.metrics._inputs import as_pair, as_tolerance, crop_to_union
from covseg.metrics.lesions import lesion_metrics_unchecked
from covseg.metrics.overlap import dice_unchecked, nave_from_volumes, volume_ml_unchecked
from covseg.metrics.registry import SMALLER_IS_BETTER as SMALLER_IS_BETTER
from covseg.metrics.surface import surface_distances_unchecked

#: The keys of :func:`evaluate_case`, in order (column names downstream rely on them).
METRIC_KEYS = (
    "dice",
    "nsd",
    "nave",
    "hd95",
    "assd",
    "lesion_sensitivity",
    "lesion_precision",
    "lesion_f1",
    "fp_lesions",
    "truth_lesions",
    "pred_lesions",
    "truth_ml",
    "pred_ml",
)


def evaluate_case(
    pred: npt.ArrayLike,
    truth: npt.ArrayLike,
    spacing: Sequence[float],
    tolerance_mm: float = 1.0,
    *,
    min_lesion_overlap: float = 0.0,
) -> dict[str, float]:
    """Every metric of one predicted mask against its truth.

    Parameters
    ----------
    pred, truth
        2D or 3D masks of the same shape, boolean or 0/1.
    spacing
        Voxel size in mm along each array axis.
    tolerance_mm
        Normalized Surface Dice tolerance in mm (COVID-19-20 used 1 mm).
    min_lesion_overlap
        Lesion detection threshold, see :func:`covseg.metrics.lesion_metrics`.

    Returns
    -------
    dict[str, float]
        The keys of :data:`METRIC_KEYS`: ``dice``, ``nsd``, ``nave``, ``hd95`` (mm), ``assd``
        (mm), ``lesion_sensitivity``, ``lesion_precision``, ``lesion_f1``, ``fp_lesions``,
        ``truth_lesions``, ``pred_lesions``, ``truth_ml`` and ``pred_ml`` (mL). Empty masks
        follow the conventions of ``docs/metrics.md``.
    """
    tolerance = as_tolerance(tolerance_mm)
    if not 0.0 <= float(min_lesion_overlap) <= 1.0:
        raise ValueError(f"min_lesion_overlap must lie in [0, 1], got {min_lesion_overlap}")
    pred_mask, truth_mask, checked = as_pair(pred, truth, spacing)
    pred_mask, truth_mask = crop_to_union(pred_mask, truth_mask)
    surface = surface_distances_unchecked(pred_mask, truth_mask, checked)
    lesions = lesion_metrics_unchecked(pred_mask, truth_mask, checked, float(min_lesion_overlap))
    return {
        "dice": dice_unchecked(pred_mask, truth_mask),
        "nsd": surface.surface_dice(tolerance),
        "nave": nave_from_volumes(
            int(np.count_nonzero(pred_mask)), int(np.count_nonzero(truth_mask))
        ),
        "hd95": surface.hausdorff(95.0),
        "assd": surface.average_symmetric(),
        "lesion_sensitivity": lesions.sensitivity,
        "lesion_precision": lesions.precision,
        "lesion_f1": lesions.f1,
        "fp_lesions": float(lesions.fp_lesions),
        "truth_lesions": float(lesions.truth_lesions),
        "pred_lesions": float(lesions.pred_lesions),
        "truth_ml": volume_ml_unchecked(truth_mask, checked),
        "pred_ml": volume_ml_unchecked(pred_mask, checked),
    }
