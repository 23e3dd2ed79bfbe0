"""covseg.metrics against the reference implementations: DeepMind surface-distance and MONAI.

Cases: random blobs, realistic anisotropic CT spacing (0.74 x 0.74 x 5 mm), single-voxel and
several small lesions, masks touching the array border, 2D masks. Values must agree to 1e-6
(DeepMind's to rounding error: the same float64 formulas; MONAI works in float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from covseg import metrics
from covseg.metrics.surfels import measure_table

surface_distance = pytest.importorskip("surface_distance")
# surface-distance 0.1 imports scipy.ndimage through deprecated namespaces.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOLERANCES = (0.0, 0.5, 1.0, 2.0, 5.0)


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], count: int, grow: int) -> np.ndarray:
    seeds = np.zeros(shape, bool)
    seeds[tuple(rng.integers(0, n, count) for n in shape)] = True
    return ndimage.binary_dilation(seeds, iterations=grow) & (rng.random(shape) > 0.15)


def _case(name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(pred, truth, spacing) for each named situation."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "random-anisotropic":
        truth = _blobs(rng, (40, 44, 12), 5, 3)
        pred = _blobs(rng, (40, 44, 12), 3, 3) | (truth & (rng.random(truth.shape) > 0.3))
        return pred, truth, (0.74, 0.74, 5.0)
    if name == "random-spacing":
        truth = _blobs(rng, (24, 30, 26), 4, 3)
        pred = ndimage.binary_dilation(truth) ^ (rng.random(truth.shape) > 0.9)
        return pred, truth, tuple(rng.uniform(0.3, 3.0, 3))
    if name == "realistic-lesions":  # a grown, a shrunk and a missed lesion, a false positive
        z, y, x = np.ogrid[:60, :64, :14]
        truth = ((z - 20) ** 2 + (y - 20) ** 2 + (7 * (x - 6)) ** 2 < 150) | (
            (z - 42) ** 2 / 2 + (y - 44) ** 2 + (6 * (x - 8)) ** 2 < 100
        )
        truth[50, 10, 3] = truth[51, 11, 3] = True  # a tiny lesion, missed
        pred = ndimage.binary_dilation(truth, iterations=1)
        pred[30:, :, :] = ndimage.binary_erosion(truth)[30:, :, :]
        pred[50:52, 10:12, 3] = False
        pred[5:9, 50:55, 9:11] = True
        return pred, truth, (0.74, 0.74, 5.0)
    if name == "single-voxels":
        truth = np.zeros((9, 9, 5), bool)
        pred = np.zeros((9, 9, 5), bool)
        truth[2, 2, 1] = truth[6, 7, 3] = True
        pred[2, 3, 1] = pred[6, 7, 4] = pred[0, 8, 0] = True
        return pred, truth, (0.8, 0.8, 1.25)
    if name == "touching-borders":
        truth = _blobs(rng, (16, 18, 10), 6, 4)
        truth[0, :, :] |= rng.random((18, 10)) > 0.5
        truth[:, :, -1] = True
        pred = truth.copy()
        pred[-1, :, :] = True
        pred[:, 0, :] ^= True
        return pred, truth, (0.7, 0.9, 2.5)
    if name == "speckle":  # surfels fill the box: the distance-transform search path
        truth = _blobs(rng, (30, 30, 10), 3, 4)
        pred = truth ^ (rng.random(truth.shape) > 0.85)
        return pred, truth, (0.74, 0.74, 5.0)
    if name == "2d":
        truth = _blobs(rng, (70, 60), 6, 4)
        pred = ndimage.binary_erosion(truth) | _blobs(rng, (70, 60), 2, 3)
        return pred, truth, (0.74, 1.3)
    raise KeyError(name)


CASES = (
    "random-anisotropic",
    "random-spacing",
    "realistic-lesions",
    "single-voxels",
    "touching-borders",
    "speckle",
    "2d",
)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    return _case(request.param)


def _deepmind(case: tuple[np.ndarray, np.ndarray, tuple[float, ...]]) -> dict:
    pred, truth, spacing = case
    return surface_distance.compute_surface_distances(truth, pred, spacing)


def test_cases_are_non_trivial(case):
    pred, truth, _ = case
    assert truth.any() and pred.any() and (pred != truth).any()


def test_surfel_distances_and_areas_equal_deepmind(case):
    pred, truth, spacing = case
    ref = _deepmind(case)
    mine = metrics.surface_distances(pred, truth, spacing)
    for distances, areas, ref_d, ref_a in (
        (mine.truth_to_pred, mine.truth_areas, "distances_gt_to_pred", "surfel_areas_gt"),
        (mine.pred_to_truth, mine.pred_areas, "distances_pred_to_gt", "surfel_areas_pred"),
    ):
        order = np.lexsort((areas, distances))
        # Equidistant nearest corners (a 3-4-5 triangle) may differ in the last bit.
        np.testing.assert_allclose(distances[order], ref[ref_d], rtol=1e-15, atol=0)
        np.testing.assert_allclose(areas[order], ref[ref_a], rtol=1e-12)


def test_nsd_hd_assd_dice_equal_deepmind(case):
    pred, truth, spacing = case
    ref = _deepmind(case)
    for tolerance in TOLERANCES:
        expected = surface_distance.compute_surface_dice_at_tolerance(ref, tolerance)
        got = metrics.normalized_surface_dice(pred, truth, spacing, tolerance_mm=tolerance)
        assert got == pytest.approx(expected, abs=1e-12)
    assert metrics.hausdorff_distance_95(pred, truth, spacing) == pytest.approx(
        surface_distance.compute_robust_hausdorff(ref, 95), abs=1e-12
    )
    surface = metrics.surface_distances(pred, truth, spacing)
    for percent in (50, 100):
        assert surface.hausdorff(percent) == pytest.approx(
            surface_distance.compute_robust_hausdorff(ref, percent), abs=1e-12
        )
    # DeepMind gives the two directed averages; ASSD weights them by their surface areas.
    to_pred, to_truth = surface_distance.compute_average_surface_distance(ref)
    area_truth, area_pred = ref["surfel_areas_gt"].sum(), ref["surfel_areas_pred"].sum()
    expected_assd = (to_pred * area_truth + to_truth * area_pred) / (area_truth + area_pred)
    got_assd = metrics.average_symmetric_surface_distance(pred, truth, spacing)
    assert got_assd == pytest.approx(expected_assd, abs=1e-12)
    assert metrics.dice(pred, truth) == pytest.approx(
        surface_distance.compute_dice_coefficient(truth, pred), abs=1e-15
    )


def test_nsd_equals_monai_subvoxel_surface_dice(case):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_surface_dice

    pred, truth, spacing = case
    tolerances = list(TOLERANCES)
    # One channel per tolerance, as MONAI takes one threshold per class.
    stack = (np.repeat(m[None, None], len(tolerances), axis=1) for m in (pred, truth))
    pred_t, truth_t = (torch.from_numpy(s.astype(np.float32)) for s in stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_values = compute_surface_dice(
            pred_t,
            truth_t,
            tolerances,
            include_background=True,
            spacing=spacing,
            use_subvoxels=True,
        )[0].numpy()
    for tolerance, expected in zip(tolerances, monai_values, strict=True):
        got = metrics.normalized_surface_dice(pred, truth, spacing, tolerance_mm=tolerance)
        assert got == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.74, 0.74, 5.0), (3.0, 0.2, 0.7)])
def test_surfel_area_table_equals_deepmind(spacing):
    kernel = surface_distance.lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL
    reference = surface_distance.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    # Translate covseg's bit order (bit 4a + 2b + c for neighbour (a, b, c)) into DeepMind's.
    to_reference = [
        sum(
            int(kernel[a, b, c])
            for a, b, c in np.ndindex(2, 2, 2)
            if code >> (4 * a + 2 * b + c) & 1
        )
        for code in range(256)
    ]
    np.testing.assert_allclose(measure_table(spacing), reference[to_reference], rtol=1e-12)


def test_contour_length_table_equals_deepmind():
    spacing = (0.74, 1.3)
    kernel = surface_distance.lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL
    reference = surface_distance.lookup_tables.create_table_neighbour_code_to_contour_length(
        spacing
    )
    to_reference = [
        sum(int(kernel[a, b]) for a, b in np.ndindex(2, 2) if code >> (2 * a + b) & 1)
        for code in range(16)
    ]
    np.testing.assert_allclose(measure_table(spacing), reference[to_reference], rtol=1e-12)


def test_one_empty_mask_matches_references(monkeypatch):
    """DeepMind (np.Inf patched back for NumPy 2) and MONAI also give NSD 0 and HD inf."""
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)
    pred, truth, spacing = _case("random-anisotropic")
    empty = np.zeros_like(truth)
    for p, t in ((empty, truth), (pred, empty)):
        ref = surface_distance.compute_surface_distances(t, p, spacing)
        assert surface_distance.compute_surface_dice_at_tolerance(ref, 1.0) == 0.0
        assert metrics.normalized_surface_dice(p, t, spacing) == 0.0
        assert surface_distance.compute_robust_hausdorff(ref, 95) == np.inf
        assert metrics.hausdorff_distance_95(p, t, spacing) == np.inf
