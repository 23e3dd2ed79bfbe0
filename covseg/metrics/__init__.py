"""The challenge's evaluation metrics, exact to the reference definitions.

Dice, Normalized Surface Dice (surfel definition of Nikolov et al., as DeepMind's
``surface-distance``), Normalized Absolute Volume Error, Hausdorff 95, average symmetric surface
distance and lesion-wise detection metrics; :func:`evaluate_case` computes them all at once.
:data:`METRICS` is the registry of every metric column (label, unit, direction, task or count).
Definitions and empty-mask conventions: ``docs/metrics.md``.

The heavy metric modules (scipy, cc3d) load on first use, so that a light user of the registry
(the platform's web server) imports none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from covseg.metrics.registry import (
    METRICS,
    RANKING_METRICS,
    SMALLER_IS_BETTER,
    Metric,
    metric,
)

if TYPE_CHECKING:
    from covseg.metrics.case import METRIC_KEYS, evaluate_case
    from covseg.metrics.lesions import Lesion, LesionMetrics, lesion_metrics
    from covseg.metrics.overlap import dice, normalized_absolute_volume_error, volume_ml
    from covseg.metrics.surface import (
        SurfaceDistances,
        average_symmetric_surface_distance,
        hausdorff_distance_95,
        normalized_surface_dice,
        surface_distances,
    )

#: Where each lazily loaded public name lives.
_LAZY = {
    "METRIC_KEYS": "case",
    "evaluate_case": "case",
    "Lesion": "lesions",
    "LesionMetrics": "lesions",
    "lesion_metrics": "lesions",
    "dice": "overlap",
    "normalized_absolute_volume_error": "overlap",
    "volume_ml": "overlap",
    "SurfaceDistances": "surface",
    "average_symmetric_surface_distance": "surface",
    "hausdorff_distance_95": "surface",
    "normalized_surface_dice": "surface",
    "surface_distances": "surface",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"covseg.metrics.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'covseg.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "METRICS",
    "METRIC_KEYS",
    "RANKING_METRICS",
    "SMALLER_IS_BETTER",
    "Lesion",
    "LesionMetrics",
    "Metric",
    "SurfaceDistances",
    "average_symmetric_surface_distance",
    "dice",
    "evaluate_case",
    "hausdorff_distance_95",
    "lesion_metrics",
    "metric",
    "normalized_absolute_volume_error",
    "normalized_surface_dice",
    "surface_distances",
    "volume_ml",
]
