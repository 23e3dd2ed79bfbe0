"""Lesion-wise metrics on hand-built lesions whose counts and overlaps are known."""

from __future__ import annotations

import numpy as np
import pytest

from covseg import metrics

SPACING = (0.8, 0.8, 2.0)  # 1.28 mm^3 voxels


def _cube(mask: np.ndarray, start: tuple[int, int, int], size: int) -> None:
    mask[tuple(slice(s, s + size) for s in start)] = True


@pytest.fixture
def three_lesions() -> tuple[np.ndarray, np.ndarray]:
    """Truth: three 4-voxel cubes. Prediction: the first exactly, half of the second, the third
    missed, plus one false-positive cube far away."""
    truth = np.zeros((30, 30, 12), bool)
    pred = np.zeros_like(truth)
    for start in ((2, 2, 2), (12, 12, 2), (22, 22, 6)):
        _cube(truth, start, 4)
    _cube(pred, (2, 2, 2), 4)
    pred[12:14, 12:16, 2:6] = True  # half of lesion 2
    _cube(pred, (2, 24, 8), 3)  # false positive
    return pred, truth


def test_counts_rates_and_per_lesion_dice(three_lesions):
    pred, truth = three_lesions
    result = metrics.lesion_metrics(pred, truth, SPACING)
    assert (result.truth_lesions, result.pred_lesions) == (3, 3)
    assert (result.detected, result.true_positive_pred, result.fp_lesions) == (2, 2, 1)
    assert result.sensitivity == pytest.approx(2 / 3)
    assert result.precision == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(2 / 3)
    first, second, third = result.lesions
    assert first.volume_ml == pytest.approx(64 * 1.28 / 1000)
    assert (first.overlap, first.dice, first.detected) == (1.0, 1.0, True)
    # 32 of 64 voxels covered by a 32-voxel prediction: Dice = 2*32 / (64 + 32).
    assert second.overlap == pytest.approx(0.5) and second.dice == pytest.approx(2 / 3)
    assert (third.overlap, third.dice, third.detected) == (0.0, 0.0, False)


def test_overlap_threshold(three_lesions):
    pred, truth = three_lesions
    # The half-covered lesion counts at a 50 % threshold but not above it.
    assert metrics.lesion_metrics(pred, truth, SPACING, min_overlap=0.5).detected == 2
    strict = metrics.lesion_metrics(pred, truth, SPACING, min_overlap=0.6)
    assert strict.detected == 1
    # The half prediction lies wholly inside its lesion, so it stays a true positive.
    assert strict.true_positive_pred == 2


def test_26_connectivity_joins_corner_neighbours():
    truth = np.zeros((6, 6, 6), bool)
    truth[1, 1, 1] = truth[2, 2, 2] = True  # touch by a corner only: one lesion
    truth[4, 4, 4] = True
    result = metrics.lesion_metrics(truth, truth, SPACING)
    assert result.truth_lesions == result.pred_lesions == 2
    plane = np.zeros((5, 5), bool)
    plane[1, 1] = plane[2, 2] = True  # 2D: 8-connectivity
    assert metrics.lesion_metrics(plane, plane, (1.0, 1.0)).truth_lesions == 1


def test_one_prediction_spanning_two_lesions():
    truth = np.zeros((20, 8, 8), bool)
    _cube(truth, (2, 2, 2), 3)
    _cube(truth, (10, 2, 2), 3)
    pred = np.zeros_like(truth)
    pred[2:13, 2:5, 2:5] = True  # one slab bridging both
    result = metrics.lesion_metrics(pred, truth, SPACING)
    assert (result.detected, result.true_positive_pred, result.fp_lesions) == (2, 1, 0)
    assert result.sensitivity == 1.0 and result.precision == 1.0
    # Each lesion (27 voxels) against the whole 99-voxel slab: 2*27 / (27 + 99).
    assert [lesion.dice for lesion in result.lesions] == pytest.approx([54 / 126] * 2)


def test_evaluate_case_reports_the_lesion_metrics(three_lesions):
    pred, truth = three_lesions
    case = metrics.evaluate_case(pred, truth, SPACING, min_lesion_overlap=0.6)
    assert case["truth_lesions"] == 3.0 and case["pred_lesions"] == 3.0
    assert case["lesion_sensitivity"] == pytest.approx(1 / 3)
    assert case["lesion_precision"] == pytest.approx(2 / 3)
    assert case["lesion_f1"] == pytest.approx(2 * (1 / 3) * (2 / 3) / 1.0)
    assert case["fp_lesions"] == 1.0


@pytest.mark.parametrize("shape", [(20, 21, 22), (40, 45)])
def test_lesions_are_scipy_full_connectivity_components_in_scipy_order(shape):
    from scipy import ndimage

    rng = np.random.default_rng(len(shape))
    truth = rng.random(shape) > 0.8
    labels, count = ndimage.label(truth, structure=np.ones((3,) * truth.ndim))
    expected_ml = np.bincount(labels.ravel())[1:] * np.prod(SPACING[: truth.ndim]) / 1000
    for layout in (truth, np.asfortranarray(truth)):
        result = metrics.lesion_metrics(layout, layout, SPACING[: truth.ndim])
        assert result.truth_lesions == result.pred_lesions == count > 10
        assert [lesion.volume_ml for lesion in result.lesions] == pytest.approx(expected_ml)
