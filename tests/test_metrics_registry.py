"""The metric registry describes every column of metrics.csv once, with its direction."""

import numpy as np
import pytest

from covseg import metrics
from covseg.metrics.batch import COLUMNS


def test_registry_lists_every_metric_column_in_order() -> None:
    assert tuple(metrics.METRICS) == metrics.METRIC_KEYS
    assert COLUMNS == ("case", "source", "subset", *metrics.METRICS, "status", "error")


def test_directions_follow_the_metric_definitions() -> None:
    # overlap and detection scores grow with agreement; errors, distances and false positives
    # shrink; counts and volumes describe the data and cannot be ranked
    larger = {"dice", "nsd", "lesion_sensitivity", "lesion_precision", "lesion_f1"}
    smaller = {"nave", "hd95", "assd", "fp_lesions"}
    counts = {"truth_lesions", "pred_lesions", "truth_ml", "pred_ml"}
    for name, m in metrics.METRICS.items():
        assert m.name == name and m.label
        if name in larger:
            assert (m.direction, m.kind) == ("larger", "task")
        elif name in smaller:
            assert (m.direction, m.kind) == ("smaller", "task") and m.smaller_is_better
        else:
            assert name in counts and (m.direction, m.kind) == (None, "count")
    assert metrics.SMALLER_IS_BETTER == frozenset(smaller)
    assert set(metrics.RANKING_METRICS) == larger | smaller
    assert metrics.METRICS["hd95"].unit == "mm" and metrics.METRICS["truth_ml"].unit == "mL"


def test_the_direction_matches_what_a_better_mask_scores() -> None:
    truth = np.zeros((20, 20, 5), bool)
    truth[5:15, 5:15, 1:4] = True
    good, bad = truth.copy(), truth.copy()
    good[5, 5:15, 1:4] = False  # one face shaved
    bad[5:15, 5:10, 1:4] = False  # half gone
    sg, sb = (metrics.evaluate_case(p, truth, (1.0, 1.0, 1.0)) for p in (good, bad))
    for name in ("dice", "nsd", "nave", "hd95", "assd"):
        m = metrics.METRICS[name]
        assert (sg[name] < sb[name]) == m.smaller_is_better, name


def test_unknown_metric_is_one_line() -> None:
    with pytest.raises(KeyError, match="'dicee' is not a metric of metrics.csv"):
        metrics.metric("dicee")
