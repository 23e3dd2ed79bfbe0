"""Simulated teams: each perturbation does what its name says, measured on a known sphere."""

import numpy as np

from covseg.demo import teams

SPACING = (1.0, 1.0, 2.0)


def _sphere(shape=(40, 40, 20), centre=(20, 20, 10), radius_mm=8.0) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, SPACING, strict=True))
    return d2 <= radius_mm**2


def test_over_and_under_segmentation_change_volume_in_the_right_direction():
    truth = _sphere()
    grown = teams.over_segment(truth, SPACING, 2.0)
    shrunk = teams.under_segment(truth, SPACING, 2.0)
    assert grown.sum() > truth.sum() > shrunk.sum() > 0
    assert (grown >= truth).all() and (shrunk <= truth).all()
    # A 2 mm margin on an 8 mm sphere: volume ratio close to (10/8)^3 (discretisation aside).
    assert 1.5 < grown.sum() / truth.sum() < 2.4


def test_missed_small_lesions_drops_only_small_components():
    big = _sphere(radius_mm=8.0)  # ~2.1 mL
    small = _sphere(centre=(5, 5, 3), radius_mm=2.5)  # < 0.1 mL
    out = teams.miss_small_lesions(big | small, SPACING, min_ml=1.0)
    assert np.array_equal(out, big)


def test_boundary_noise_touches_only_the_border_and_is_seeded():
    truth = _sphere()
    a = teams.boundary_noise(truth, SPACING, 0.5, seed=1)
    b = teams.boundary_noise(truth, SPACING, 0.5, seed=1)
    assert np.array_equal(a, b)
    changed = a ^ truth
    assert changed.any()
    from scipy import ndimage

    core = ndimage.binary_erosion(truth, iterations=2)
    far = ~ndimage.binary_dilation(truth, iterations=2)
    assert not (changed & (core | far)).any()


def test_false_positives_stay_in_region_and_keep_truth():
    truth = _sphere(radius_mm=4.0)
    region = np.zeros_like(truth)
    region[:, :20, :] = True
    out = teams.add_false_positives(truth, SPACING, region, n=3, radius_mm=3.0, seed=0)
    assert (out >= truth).all()
    added = out & ~truth
    assert added.any() and not (added & ~region).any()


def test_every_team_returns_a_mask_of_the_truth_shape():
    truth = _sphere()
    lung = np.ones_like(truth)
    for name, perturb in teams.TEAMS.items():
        out = perturb(truth, SPACING, lung, 0)
        assert out.shape == truth.shape and out.dtype == bool, name
