"""The challenge's evaluation metrics, exact to the reference definitions.

Dice, Normalized Surface Dice (surfel definition of Nikolov et al., as DeepMind's
``surface-distance``), Normalized Absolute Volume Error, Hausdorff 95, average symmetric surface
distance and lesion-wise detection metrics; :func:`evaluate_case` computes them all at once.
:data:`METRICS` is the registry of every metric column (label, unit, direction, task or count).
Definitions and empty-mask conventions: ``docs/metrics.md``.
"""

from covseg.metrics.case import METRIC_KEYS, evaluate_case
from covseg.metrics.lesions import Lesion, LesionMetrics, lesion_metrics
from covseg.metrics.overlap import dice, normalized_absolute_volume_error, volume_ml
from covseg.metrics.registry import (
    METRICS,
    RANKING_METRICS,
    SMALLER_IS_BETTER,
    Metric,
    metric,
)
from covseg.metrics.surface import (
    SurfaceDistances,
    average_symmetric_surface_distance,
    hausdorff_distance_95,
    normalized_surface_dice,
    surface_distances,
)

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
