"""The one metric registry: what each column of ``metrics.csv`` means and which way is better.

Everything downstream that needs a metric's direction (the ranking's tasks, smaller-is-better
flags, labels on plots) reads it here, so a metric is described once. A metric of kind
``"task"`` can be ranked; kind ``"count"`` is descriptive (lesion counts, volumes) and has no
direction: ranking algorithms by how many lesions the truth has would be meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    """One metric column of ``metrics.csv``.

    ``direction`` is ``"larger"`` or ``"smaller"`` (is better) for a ranking task and ``None``
    for a descriptive count; ``unit`` is ``""`` for unitless scores.
    """

    name: str
    label: str
    unit: str
    direction: Literal["larger", "smaller"] | None
    kind: Literal["task", "count"]

    @property
    def smaller_is_better(self) -> bool:
        return self.direction == "smaller"


_REGISTRY = (
    Metric("dice", "Dice similarity coefficient", "", "larger", "task"),
    Metric("nsd", "Normalized Surface Dice (1 mm)", "", "larger", "task"),
    Metric("nave", "Normalized Absolute Volume Error", "", "smaller", "task"),
    Metric("hd95", "Hausdorff distance, 95th percentile", "mm", "smaller", "task"),
    Metric("assd", "Average symmetric surface distance", "mm", "smaller", "task"),
    Metric("lesion_sensitivity", "Lesion-wise sensitivity", "", "larger", "task"),
    Metric("lesion_precision", "Lesion-wise precision", "", "larger", "task"),
    Metric("lesion_f1", "Lesion-wise F1", "", "larger", "task"),
    Metric("fp_lesions", "False-positive lesions", "lesions", "smaller", "task"),
    Metric("truth_lesions", "Lesions in the truth", "lesions", None, "count"),
    Metric("pred_lesions", "Lesions in the prediction", "lesions", None, "count"),
    Metric("truth_ml", "Lesion volume in the truth", "mL", None, "count"),
    Metric("pred_ml", "Lesion volume in the prediction", "mL", None, "count"),
)

METRICS: dict[str, Metric] = {m.name: m for m in _REGISTRY}
"""Every metric column of ``metrics.csv``, in column order."""

RANKING_METRICS = tuple(m.name for m in _REGISTRY if m.kind == "task")
"""Metrics with a direction: the columns ``covseg rank --tasks`` accepts."""

SMALLER_IS_BETTER = frozenset(m.name for m in _REGISTRY if m.smaller_is_better)
"""Metrics for which a smaller value is better."""


def metric(name: str) -> Metric:
    """The registry entry of ``name``.

    Raises
    ------
    KeyError
        With a one-line message when ``name`` is not a metric column of ``metrics.csv``.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(
            f"{name!r} is not a metric of metrics.csv (known: {', '.join(METRICS)})"
        ) from None
