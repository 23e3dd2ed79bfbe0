"""covseg.metrics: analytic cases, empty-mask conventions, properties and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from covseg import metrics

CT_SPACING = (0.74, 0.74, 5.0)


def _box(shape: tuple[int, ...], start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))] = True
    return mask


def _random_pair(seed: int, shape: tuple[int, ...] = (30, 32, 10)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = ndimage.binary_dilation(rng.random(shape) > 0.997, iterations=3)
    pred = ndimage.binary_opening(truth ^ (rng.random(shape) > 0.93)) | (rng.random(shape) > 0.999)
    return pred, truth


# --- analytic cases -------------------------------------------------------------------------


def test_dice_of_a_cube_and_its_shifted_copy():
    # A 10-voxel cube shifted by 3 voxels shares 7/10 of its volume: Dice = 2*0.7 / 2.
    truth = _box((20, 20, 20), (4, 4, 4), (10, 10, 10))
    pred = _box((20, 20, 20), (7, 4, 4), (10, 10, 10))
    assert metrics.dice(pred, truth) == pytest.approx(0.7, abs=1e-15)


def test_surface_of_a_box_is_its_marching_cubes_polytope():
    """The surfels of an A x B x C voxel box add up to the box with half-voxel chamfers.

    The marching-cubes surface of a binary box is the box spanned by the outer voxel centres
    Minkowski-summed with the octahedron reaching half a voxel along each axis: 6 faces, 12
    chamfer strips of width |(s_i, s_j)| / 2 and 8 corner triangles that form one octahedron.
    """
    (a, b, c), (sx, sy, sz) = (6, 9, 4), CT_SPACING
    box = _box((10, 12, 7), (2, 1, 2), (a, b, c))
    lx, ly, lz = (a - 1) * sx, (b - 1) * sy, (c - 1) * sz
    faces = 2 * (lx * ly + ly * lz + lx * lz)
    strips = 4 * (lx * math.hypot(sy, sz) + ly * math.hypot(sx, sz) + lz * math.hypot(sx, sy)) / 2
    octahedron = math.sqrt((sx * sy) ** 2 + (sy * sz) ** 2 + (sx * sz) ** 2)
    surface = metrics.surface_distances(box, box, CT_SPACING)
    assert surface.truth_areas.sum() == pytest.approx(faces + strips + octahedron, rel=1e-12)


def test_contour_of_a_rectangle():
    # 2D: straight sides between the outer pixel centres plus four half-diagonal corner cuts.
    spacing = (0.7, 1.3)
    rectangle = _box((12, 12), (3, 2), (5, 8))
    expected = 2 * (4 * 0.7 + 7 * 1.3) + 4 * math.hypot(0.7, 1.3) / 2
    assert metrics.surface_distances(rectangle, rectangle, spacing).truth_areas.sum() == (
        pytest.approx(expected, rel=1e-12)
    )


def test_one_slice_slab_shifted_by_one_5mm_slice():
    """A one-slice lesion moved one slice (5 mm) along z.

    Each mask's surface is two equal planes of surfels; the planes between the two slices
    coincide (distance 0), the outer planes are exactly 5 mm from the other mask. So NSD is 1/2
    for any tolerance below 5 mm and 1 from 5 mm on, HD95 is 5 mm and ASSD 2.5 mm.
    """
    truth = np.zeros((30, 30, 6), bool)
    truth[8:20, 5:17, 2] = ndimage.binary_dilation(np.eye(12, dtype=bool), iterations=3)
    pred = np.roll(truth, 1, axis=2)
    for tolerance, expected in ((0.0, 0.5), (1.0, 0.5), (4.99, 0.5), (5.0, 1.0), (6.0, 1.0)):
        got = metrics.normalized_surface_dice(pred, truth, CT_SPACING, tolerance_mm=tolerance)
        assert got == pytest.approx(expected, abs=1e-12)
    assert metrics.hausdorff_distance_95(pred, truth, CT_SPACING) == pytest.approx(5.0)
    assert metrics.average_symmetric_surface_distance(pred, truth, CT_SPACING) == (
        pytest.approx(2.5)
    )


def test_box_shifted_along_z_within_and_beyond_the_tolerance():
    truth = _box((16, 16, 10), (3, 3, 2), (9, 9, 5))
    pred = np.roll(truth, 1, axis=2)  # 5 mm
    assert metrics.normalized_surface_dice(pred, truth, CT_SPACING, tolerance_mm=6.0) == 1.0
    beyond = metrics.normalized_surface_dice(pred, truth, CT_SPACING, tolerance_mm=1.0)
    assert 0.0 < beyond < 1.0
    # In-plane, one 0.74 mm voxel is within a 1 mm tolerance.
    in_plane = np.roll(truth, 1, axis=0)
    assert metrics.normalized_surface_dice(in_plane, truth, CT_SPACING, tolerance_mm=1.0) == 1.0
    assert metrics.hausdorff_distance_95(in_plane, truth, CT_SPACING) == pytest.approx(0.74)


def test_sphere_volume_in_ml():
    # A 12 mm sphere on a 0.5 mm grid: 4/3 pi r^3 = 7.238 mL, voxelised within 0.5 %.
    spacing, radius = (0.5, 0.5, 0.5), 12.0
    axes = np.ogrid[tuple(slice(-30, 31) for _ in range(3))]
    sphere = sum((g * 0.5) ** 2 for g in axes) <= radius**2
    assert metrics.volume_ml(sphere, spacing) == pytest.approx(
        4 / 3 * math.pi * 12**3 / 1e3, rel=5e-3
    )
    case = metrics.evaluate_case(sphere, sphere, spacing)
    assert case["truth_ml"] == case["pred_ml"] == metrics.volume_ml(sphere, spacing)


def test_nave_of_known_volumes():
    truth = _box((10, 10, 10), (0, 0, 0), (4, 5, 5))  # 100 voxels
    pred = _box((10, 10, 10), (2, 2, 2), (5, 5, 5))  # 125 voxels
    assert metrics.normalized_absolute_volume_error(pred, truth, CT_SPACING) == pytest.approx(0.25)
    assert metrics.normalized_absolute_volume_error(truth, pred, CT_SPACING) == pytest.approx(0.2)


# --- empty masks ----------------------------------------------------------------------------

EMPTY_CASES = {
    "both empty": (False, False),
    "truth empty": (True, False),
    "prediction empty": (False, True),
}
EXPECTED_EMPTY = {
    # key:                 both empty, truth empty, prediction empty
    "dice": (1.0, 0.0, 0.0),
    "nsd": (1.0, 0.0, 0.0),
    "nave": (0.0, math.inf, 1.0),
    "hd95": (0.0, math.inf, math.inf),
    "assd": (0.0, math.inf, math.inf),
    "lesion_sensitivity": (1.0, 1.0, 0.0),
    "lesion_precision": (1.0, 0.0, 1.0),
    "lesion_f1": (1.0, 0.0, 0.0),
    "fp_lesions": (0.0, 2.0, 0.0),
    "truth_lesions": (0.0, 0.0, 2.0),
    "pred_lesions": (0.0, 2.0, 0.0),
}


@pytest.mark.parametrize("which", list(EMPTY_CASES))
def test_empty_mask_conventions(which):
    two_lesions = _box((12, 12, 6), (1, 1, 1), (3, 3, 2)) | _box((12, 12, 6), (7, 7, 3), (4, 2, 2))
    empty = np.zeros_like(two_lesions)
    has_pred, has_truth = EMPTY_CASES[which]
    pred = two_lesions if has_pred else empty
    truth = two_lesions if has_truth else empty
    column = list(EMPTY_CASES).index(which)
    case = metrics.evaluate_case(pred, truth, CT_SPACING)
    for key, values in EXPECTED_EMPTY.items():
        assert case[key] == values[column], key
    # The single-metric functions follow the same conventions.
    assert metrics.dice(pred, truth) == case["dice"]
    assert metrics.normalized_surface_dice(pred, truth, CT_SPACING) == case["nsd"]
    assert metrics.normalized_absolute_volume_error(pred, truth, CT_SPACING) == case["nave"]
    assert metrics.hausdorff_distance_95(pred, truth, CT_SPACING) == case["hd95"]
    assert metrics.average_symmetric_surface_distance(pred, truth, CT_SPACING) == case["assd"]


# --- properties -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_metrics_and_bounds(seed):
    pred, truth = _random_pair(seed)
    forward = metrics.evaluate_case(pred, truth, CT_SPACING)
    backward = metrics.evaluate_case(truth, pred, CT_SPACING)
    for key in ("dice", "nsd", "hd95", "assd", "lesion_f1"):
        assert forward[key] == pytest.approx(backward[key], rel=1e-12), key
    assert forward["lesion_sensitivity"] == pytest.approx(backward["lesion_precision"])
    assert forward["truth_lesions"] == backward["pred_lesions"]
    for key in ("dice", "nsd", "lesion_sensitivity", "lesion_precision", "lesion_f1"):
        assert 0.0 <= forward[key] <= 1.0, key
    assert 0.0 < forward["dice"] < 1.0 and forward["hd95"] >= 0 and forward["assd"] >= 0
    assert forward["hd95"] <= metrics.surface_distances(pred, truth, CT_SPACING).hausdorff(100)


def test_invariant_to_cropping_and_zero_padding():
    pred, truth = _random_pair(3)
    reference = metrics.evaluate_case(pred, truth, CT_SPACING)
    rows = np.flatnonzero((pred | truth).any(axis=(1, 2)))
    cropped = slice(rows[0], rows[-1] + 1)  # masks now touch the array border
    pad = ((5, 2), (0, 7), (3, 3))
    for p, t in ((pred[cropped], truth[cropped]), (np.pad(pred, pad), np.pad(truth, pad))):
        assert metrics.evaluate_case(p, t, CT_SPACING) == pytest.approx(reference, rel=1e-12)


def test_invariant_to_axis_order_with_matching_spacing():
    pred, truth = _random_pair(4)
    reference = metrics.evaluate_case(pred, truth, CT_SPACING)
    order = (2, 0, 1)
    spacing = tuple(CT_SPACING[a] for a in order)
    moved = metrics.evaluate_case(pred.transpose(order), truth.transpose(order), spacing)
    assert moved == pytest.approx(reference, rel=1e-12)


def test_dtypes_and_memory_layouts_give_the_same_values():
    pred, truth = _random_pair(5)
    reference = metrics.evaluate_case(pred, truth, CT_SPACING)
    for dtype in (np.uint8, np.int16, np.uint32, np.float32):
        assert metrics.evaluate_case(pred.astype(dtype), truth.astype(dtype), CT_SPACING) == (
            reference
        )
    fortran = metrics.evaluate_case(np.asfortranarray(pred), np.asfortranarray(truth), CT_SPACING)
    assert fortran == pytest.approx(reference, rel=1e-12)


def test_evaluate_case_keys_and_directions():
    pred, truth = _random_pair(6)
    case = metrics.evaluate_case(pred, truth, CT_SPACING)
    assert tuple(case) == metrics.METRIC_KEYS == (
        "dice", "nsd", "nave", "hd95", "assd", "lesion_sensitivity", "lesion_precision",
        "lesion_f1", "fp_lesions", "truth_lesions", "pred_lesions", "truth_ml", "pred_ml",
    )  # fmt: skip
    assert all(type(value) is float for value in case.values())
    assert metrics.SMALLER_IS_BETTER == frozenset({"nave", "hd95", "assd", "fp_lesions"})
    # A looser tolerance can only accept more of the surface.
    loose = metrics.evaluate_case(pred, truth, CT_SPACING, tolerance_mm=5.0)
    assert loose["nsd"] >= case["nsd"]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "truth", "spacing", "message"),
    [
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), (1, 1, 1), "differs from truth shape"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, 1), "has 2 values"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, 0, 1), "positive and finite"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, np.nan, 1), "positive and finite"),
        (np.full((4, 4, 4), np.nan), np.zeros((4, 4, 4)), (1, 1, 1), "pred: mask contains NaN"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), 2), (1, 1, 1), "truth: mask values must be 0"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), -1), (1, 1, 1), "truth: mask values must be 0"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), 0.5), (1, 1, 1), "fractional"),
        (np.zeros((4, 4, 4, 2)), np.zeros((4, 4, 4, 2)), (1, 1, 1, 1), "2D or 3D"),
        (np.zeros((4, 4), complex), np.zeros((4, 4)), (1, 1), "dtype complex"),
    ],
)
def test_invalid_inputs_raise_clear_errors(pred, truth, spacing, message):
    with pytest.raises(ValueError, match=message):
        metrics.evaluate_case(pred, truth, spacing)


def test_invalid_tolerance_and_overlap():
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match="tolerance_mm"):
        metrics.normalized_surface_dice(mask, mask, (1, 1, 1), tolerance_mm=-1)
    with pytest.raises(ValueError, match="min_lesion_overlap"):
        metrics.evaluate_case(mask, mask, (1, 1, 1), min_lesion_overlap=1.5)
    with pytest.raises(ValueError, match="min_overlap"):
        metrics.lesion_metrics(mask, mask, (1, 1, 1), min_overlap=-0.1)
    with pytest.raises(ValueError, match="percent"):
        metrics.surface_distances(mask, mask, (1, 1, 1)).hausdorff(101)


def test_worked_example_of_the_docs():
    """docs/metrics.md: a 12 x 12-voxel one-slice lesion predicted one 5 mm slice higher."""
    truth = _box((16, 16, 5), (2, 2, 2), (12, 12, 1))
    pred = _box((16, 16, 5), (2, 2, 3), (12, 12, 1))
    case = metrics.evaluate_case(pred, truth, CT_SPACING)
    expected = {"dice": 0.0, "nsd": 0.5, "nave": 0.0, "hd95": 5.0, "assd": 2.5}
    expected |= {"lesion_sensitivity": 0.0, "lesion_precision": 0.0, "lesion_f1": 0.0}
    expected |= {"fp_lesions": 1.0, "truth_ml": 0.394272, "pred_ml": 0.394272}
    assert {key: case[key] for key in expected} == pytest.approx(expected, abs=1e-12)
    areas = metrics.surface_distances(pred, truth, CT_SPACING).truth_areas
    assert areas.sum() == pytest.approx(302.35, abs=0.005)
