"""Simulated challenge "teams": predictions made by perturbing the truth in documented ways.

The demo ranks a trained model against these, so that the statistical ranking has algorithms of
known, distinct quality to separate. Each team applies one kind of error that real COVID-19-20
submissions showed:

- ``over-segmentation``: every lesion grown by a fixed margin in mm (a too-low threshold);
- ``under-segmentation``: every lesion shrunk by a fixed margin in mm (a too-high threshold);
- ``missed-small-lesions``: lesions under a volume in mL dropped (poor sensitivity to small foci);
- ``boundary-noise``: the lesion border randomly grown or shrunk voxel by voxel (noisy contours);
- ``false-positives``: spurious blobs added inside the lungs (no lung post-processing).

All perturbations are deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Mask = npt.NDArray[np.bool_]


def _ball(radius_mm: float, spacing: tuple[float, ...]) -> Mask:
    """A structuring element covering ``radius_mm`` on an anisotropic grid (at least 1 voxel)."""
    half = [max(0, int(np.floor(radius_mm / s))) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True))
    ball = np.asarray(dist2 <= radius_mm**2)
    if ball.sum() <= 1:  # margin smaller than a voxel: use the 6-neighbourhood
        return ndimage.generate_binary_structure(len(spacing), 1)
    return ball


def over_segment(truth: Mask, spacing: tuple[float, ...], margin_mm: float = 2.0) -> Mask:
    """Grow every lesion by ``margin_mm``."""
    return ndimage.binary_dilation(truth, _ball(margin_mm, spacing))


def under_segment(truth: Mask, spacing: tuple[float, ...], margin_mm: float = 2.0) -> Mask:
    """Shrink every lesion by ``margin_mm`` (small lesions may vanish)."""
    return ndimage.binary_erosion(truth, _ball(margin_mm, spacing))


def miss_small_lesions(truth: Mask, spacing: tuple[float, ...], min_ml: float = 1.0) -> Mask:
    """Drop 26-connected lesions smaller than ``min_ml`` millilitres."""
    labels, n = ndimage.label(truth, np.ones((3,) * truth.ndim, dtype=bool))
    if n == 0:
        return truth.copy()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    keep = np.concatenate([[False], sizes >= min_ml])
    return keep[labels]


def boundary_noise(truth: Mask, spacing: tuple[float, ...], p: float = 0.5, seed: int = 0) -> Mask:
    """Flip each voxel of the lesion's inner and outer border with probability ``p``."""
    rng = np.random.default_rng(seed)
    inner = truth & ~ndimage.binary_erosion(truth)
    outer = ndimage.binary_dilation(truth) & ~truth
    flip = (inner | outer) & (rng.random(truth.shape) < p)
    return truth ^ flip


def add_false_positives(
    truth: Mask,
    spacing: tuple[float, ...],
    region: Mask | None = None,
    n: int = 3,
    radius_mm: float = 6.0,
    seed: int = 0,
) -> Mask:
    """Add ``n`` balls of ``radius_mm`` centred in ``region`` (default anywhere) off the truth."""
    rng = np.random.default_rng(seed)
    allowed = ~truth if region is None else (region.astype(bool) & ~truth)
    candidates = np.argwhere(allowed)
    out = truth.copy()
    if len(candidates) == 0:
        return out
    ball = _ball(radius_mm, spacing)
    seeds = np.zeros_like(truth)
    for idx in rng.choice(len(candidates), size=min(n, len(candidates)), replace=False):
        seeds[tuple(candidates[idx])] = True
    blobs = ndimage.binary_dilation(seeds, ball)
    if region is not None:
        blobs &= region.astype(bool)
    return out | blobs


#: The demo's simulated teams: name -> perturbation of (truth, spacing, lung, seed).
TEAMS: dict[str, Callable[[Mask, tuple[float, ...], Mask | None, int], Mask]] = {
    "team-over-segmentation": lambda t, s, lung, seed: over_segment(t, s, 3.0),
    "team-under-segmentation": lambda t, s, lung, seed: under_segment(t, s, 2.0),
    "team-missed-small-lesions": lambda t, s, lung, seed: miss_small_lesions(t, s, 5.0),
    "team-boundary-noise": lambda t, s, lung, seed: boundary_noise(t, s, 0.6, seed),
    "team-false-positives": lambda t, s, lung, seed: add_false_positives(t, s, lung, 4, 8.0, seed),
}
