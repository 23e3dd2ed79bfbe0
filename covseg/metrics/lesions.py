"""Lesion-wise detection metrics, the lesion-level view COVID-19-20 lacked.

Lesions are the connected components of a mask with full connectivity (26-connected in 3D,
8-connected in 2D). A truth lesion is *detected* when one predicted lesion covers at least
``min_overlap`` of its voxels (and at least one voxel); a predicted lesion is a *true positive*
when it likewise covers at least ``min_overlap`` of its own voxels with one truth lesion, and a
*false positive* otherwise. With the default ``min_overlap=0`` any shared voxel counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
import numpy.typing as npt

from covseg.metrics._inputs import Mask, as_pair, crop_to_union

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Lesion:
    """One truth lesion and how the prediction found it.

    Attributes
    ----------
    volume_ml
        Lesion volume in mL (area in cm^2 for 2D masks).
    overlap
        Largest fraction of the lesion's voxels covered by a single predicted lesion, in [0, 1].
    detected
        Whether ``overlap`` reaches the detection threshold.
    dice
        Dice of the lesion with the union of the predicted lesions touching it (0 if none).
    """

    volume_ml: float
    overlap: float
    detected: bool
    dice: float


@dataclass(frozen=True)
class LesionMetrics:
    """Lesion counts and detection rates of one case.

    Ratios over an empty set of lesions are 1.0 (nothing to find was missed, nothing predicted
    was wrong), so a scan without lesions predicted empty scores perfectly, and F1 is 0.0
    whenever exactly one mask is empty.

    Attributes
    ----------
    truth_lesions, pred_lesions
        Number of lesions in the truth and in the prediction.
    detected
        Truth lesions detected.
    true_positive_pred
        Predicted lesions matching a truth lesion.
    lesions
        One entry per truth lesion, numbered in C (row-major) order of each lesion's first
        voxel, as ``scipy.ndimage.label`` numbers components.
    """

    truth_lesions: int
    pred_lesions: int
    detected: int
    true_positive_pred: int
    lesions: tuple[Lesion, ...]

    @property
    def sensitivity(self) -> float:
        """Share of truth lesions detected."""
        return self.detected / self.truth_lesions if self.truth_lesions else 1.0

    @property
    def precision(self) -> float:
        """Share of predicted lesions that are true positives."""
        return self.true_positive_pred / self.pred_lesions if self.pred_lesions else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of lesion sensitivity and precision."""
        total = self.sensitivity + self.precision
        return 2 * self.sensitivity * self.precision / total if total else 0.0

    @property
    def fp_lesions(self) -> int:
        """Number of false-positive predicted lesions in the scan."""
        return self.pred_lesions - self.true_positive_pred


def _components(mask: Mask) -> tuple[npt.NDArray[np.unsignedinteger], int]:
    """Full-connectivity component labels (cc3d: about ten times faster than scipy)."""
    labels, count = cc3d.connected_components(
        mask, connectivity=26 if mask.ndim == 3 else 8, return_N=True
    )
    return labels, int(count)


def _renumbering(labels: npt.NDArray[np.unsignedinteger], voxels: IntArray) -> IntArray:
    """Map from labels to numbers in C order of each component's first voxel (scipy's order).

    ``voxels`` are the flat indices of all foreground voxels, ascending.
    """
    found = labels.ravel()[voxels]
    _, first = np.unique(found, return_index=True)  # for labels 1..n, in that order
    mapping = np.zeros(first.size + 1, dtype=np.int64)
    mapping[np.argsort(first) + 1] = np.arange(1, first.size + 1)
    return mapping


def _best_share(
    owner: IntArray, shared: IntArray, sizes: IntArray, count: int
) -> npt.NDArray[np.float64]:
    """Per component (1..count): the largest ``shared / size`` over its overlapping pairs."""
    best = np.zeros(count + 1)
    np.maximum.at(best, owner, shared / sizes[owner])
    return best[1:]


def lesion_metrics_unchecked(
    pred: Mask, truth: Mask, spacing: tuple[float, ...], min_overlap: float
) -> LesionMetrics:
    """:func:`lesion_metrics` for validated inputs (best cropped to the union's bounding box)."""
    truth_labels, n_truth = _components(truth)
    pred_labels, n_pred = _components(pred)
    # Only foreground voxels matter, a small share of the box: gather their labels once.
    in_truth, in_pred = np.flatnonzero(truth), np.flatnonzero(pred)
    truth_numbers = _renumbering(truth_labels, in_truth)
    pred_numbers = _renumbering(pred_labels, in_pred)
    truth_ids = truth_numbers[truth_labels.ravel()[in_truth]]
    truth_sizes = np.bincount(truth_ids, minlength=n_truth + 1)
    pred_sizes = np.bincount(pred_numbers[pred_labels.ravel()[in_pred]], minlength=n_pred + 1)

    pred_at_truth = pred_numbers[pred_labels.ravel()[in_truth]]
    shared_voxels = pred_at_truth > 0
    pairs, shared = np.unique(
        truth_ids[shared_voxels] * (n_pred + 1) + pred_at_truth[shared_voxels],
        return_counts=True,
    )
    t_of_pair, p_of_pair = np.divmod(pairs, n_pred + 1)

    truth_share = _best_share(t_of_pair, shared, truth_sizes, n_truth)
    pred_share = _best_share(p_of_pair, shared, pred_sizes, n_pred)
    detected = (truth_share > 0) & (truth_share >= min_overlap)
    true_positive = (pred_share > 0) & (pred_share >= min_overlap)

    # Per-lesion Dice against the predicted lesions touching it: they are disjoint, so the
    # intersection is the sum of the pairwise overlaps.
    touching_volume = np.bincount(t_of_pair, weights=pred_sizes[p_of_pair], minlength=n_truth + 1)
    intersection = np.bincount(t_of_pair, weights=shared, minlength=n_truth + 1)
    lesion_dice = 2 * intersection[1:] / (truth_sizes[1:] + touching_volume[1:])

    voxel_ml = math.prod(spacing) / 1000.0
    lesions = tuple(
        Lesion(float(size * voxel_ml), float(share), bool(found), float(d))
        for size, share, found, d in zip(
            truth_sizes[1:], truth_share, detected, lesion_dice, strict=True
        )
    )
    return LesionMetrics(
        truth_lesions=n_truth,
        pred_lesions=n_pred,
        detected=int(np.count_nonzero(detected)),
        true_positive_pred=int(np.count_nonzero(true_positive)),
        lesions=lesions,
    )


def lesion_metrics(
    pred: npt.ArrayLike,
    truth: npt.ArrayLike,
    spacing: Sequence[float],
    min_overlap: float = 0.0,
) -> LesionMetrics:
    """Lesion-wise sensitivity, precision, F1, false positives and per-lesion Dice.

        Parameters
        ----------
        pred, truth
            2D or 3D masks of the same shape, boolean or 0/1.
        spacing
            Voxel size in mm along each array axis (for the lesion volumes in mL).
        min_overlap
            Detection threshold in [0, 1]: the fraction of a lesion's voxels one lesion of the other
            mask must cover. 0 means any overlap.

        Returns
        -------
        LesionMetrics

        Examples
        --------
        >>> import cc3d
    import numpy as np
        >>> truth = np.zeros((1, 9), bool); truth[0, [1, 4, 7]] = True
        >>> pred = np.zeros((1, 9), bool); pred[0, [1, 2]] = True
        >>> m = lesion_metrics(pred, truth, (1.0, 1.0))
        >>> m.truth_lesions, m.detected, m.sensitivity, m.precision, m.fp_lesions
        (3, 1, 0.3333333333333333, 1.0, 0)
    """
    if not 0.0 <= float(min_overlap) <= 1.0:
        raise ValueError(f"min_overlap must lie in [0, 1], got {min_overlap}")
    pred_mask, truth_mask, checked = as_pair(pred, truth, spacing)
    pred_mask, truth_mask = crop_to_union(pred_mask, truth_mask)
    return lesion_metrics_unchecked(pred_mask, truth_mask, checked, float(min_overlap))
