"""Per-slice Dice and the post-processing the ``slices-2d`` preset chooses by cross-validation.

Dice is :func:`covseg.metrics.dice` (its unchecked core: the masks here are boolean arrays of
one shape). Convention: the Dice of a slice where truth and prediction are both empty is 1
(nothing to find, nothing found); with one of them empty it is 0. All 50 MedSeg training slices
hold lesions, so the convention only matters for other data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from covseg.metrics.overlap import dice_unchecked

#: Candidate minimum component areas, as fractions of the slice area (0: keep everything).
MIN_AREA_FRACTIONS = (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005)


def remove_small(mask: npt.NDArray[np.bool_], min_area_fraction: float) -> npt.NDArray[np.bool_]:
    """Drop 8-connected components smaller than ``min_area_fraction`` of the slice's area."""
    if min_area_fraction <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area_fraction * mask.size
    keep[0] = False
    return keep[labels]


def segment(
    prob: npt.NDArray[np.floating], threshold: float, min_area_fraction: float
) -> npt.NDArray[np.bool_]:
    """Lesion mask from a probability map: threshold, then remove small components."""
    return remove_small(prob >= threshold, min_area_fraction)


def mean_dice(
    probs: Sequence[npt.NDArray[np.floating]],
    truths: Sequence[npt.NDArray[np.bool_]],
    threshold: float = 0.5,
    min_area_fraction: float = 0.0,
) -> float:
    """Mean over slices of the per-slice Dice (the Inf-Net convention)."""
    scores = [
        dice_unchecked(segment(p, threshold, min_area_fraction), t)
        for p, t in zip(probs, truths, strict=True)
    ]
    return float(np.mean(scores))


def choose_min_area(
    probs: Sequence[npt.NDArray[np.floating]],
    truths: Sequence[npt.NDArray[np.bool_]],
    threshold: float = 0.5,
) -> tuple[float, dict[float, float]]:
    """The candidate minimum area with the best mean Dice (the smallest on ties), and all scores."""
    scores = {f: mean_dice(probs, truths, threshold, f) for f in MIN_AREA_FRACTIONS}
    best = max(MIN_AREA_FRACTIONS, key=lambda f: (round(scores[f], 6), -f))
    return best, scores


def consolidation_wins(prob: Any, solid: Any) -> Any:
    """Where a lesion pixel is consolidation: its consolidation probability ``solid`` is at least
    its ground-glass probability ``prob - solid`` (``prob``: the lesion's; numpy or torch)."""
    return solid >= prob - solid


def class_map(
    prob: npt.NDArray[np.floating],
    solid: npt.NDArray[np.floating],
    threshold: float,
    min_area_fraction: float,
) -> npt.NDArray[np.uint8]:
    """Class map (0 background, 1 ground glass, 2 consolidation) from the two probability maps.

    The lesion is :func:`segment`'s; a lesion pixel is consolidation where its consolidation
    probability is at least its ground-glass probability (``prob - solid``).
    """
    lesion = segment(prob, threshold, min_area_fraction)
    return (lesion * (1 + consolidation_wins(prob, solid))).astype(np.uint8)


def class_scores(
    predicted: Sequence[npt.NDArray[np.uint8]], truths: Sequence[npt.NDArray[np.uint8]]
) -> dict[int, dict[str, float]]:
    """Dice of each lesion class (1, 2) over slices: mean per slice and pooled.

    ``mean`` averages the slices whose truth holds the class (elsewhere a slice's Dice would be
    1 or 0 for a few stray pixels); ``pooled`` is one Dice of all slices' pixels together;
    ``slices`` counts the slices averaged.
    """
    out = {}
    for k in (1, 2):
        scores, inter, total = [], 0, 0
        for p, t in zip(predicted, truths, strict=True):
            pk, tk = p == k, t == k
            inter += int(np.count_nonzero(pk & tk))
            total += int(np.count_nonzero(pk)) + int(np.count_nonzero(tk))
            if tk.any():
                scores.append(dice_unchecked(pk, tk))
        out[k] = {
            "mean": float(np.mean(scores)) if scores else float("nan"),
            "pooled": 2.0 * inter / total if total else 1.0,
            "slices": float(len(scores)),
        }
    return out
