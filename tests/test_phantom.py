"""Synthetic chest CTs: geometry per source, densities, masks, determinism, dataset layout."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.phantom import SOURCES, Phantom, make_phantom, write_dataset


@pytest.fixture(scope="module")
def case_a() -> Phantom:
    return make_phantom(seed=3, source="A", size=64, n_lesions=6)


@pytest.fixture(scope="module")
def case_b() -> Phantom:
    return make_phantom(seed=3, source="B", size=64)


def _world(phantom: Phantom, mask: np.ndarray) -> np.ndarray:
    """RAS+ world coordinates (mm) of a mask's voxels."""
    ijk = np.argwhere(mask)
    return ijk @ phantom.ct.affine[:3, :3].T + phantom.ct.affine[:3, 3]


def test_types_and_shared_geometry(case_a: Phantom) -> None:
    assert case_a.ct.array.dtype == np.int16
    assert case_a.lesion.array.dtype == np.uint8 and case_a.lung.array.dtype == np.uint8
    assert set(np.unique(case_a.lesion.array)) <= {0, 1}
    assert set(np.unique(case_a.lung.array)) == {0, 1, 2}
    assert case_a.ct.same_geometry(case_a.lesion) and case_a.ct.same_geometry(case_a.lung)
    assert case_a.source == "A"


@pytest.mark.parametrize("name", ["A", "B"])
def test_geometry_per_source(name: str, case_a: Phantom, case_b: Phantom) -> None:
    case = case_a if name == "A" else case_b
    sx, sy, sz = SOURCES[name].spacing
    assert case.ct.spacing == pytest.approx((sx * 8, sy * 8, sz))
    # default slices cover 320 mm: 64 thick (A) or 256 thin (B) slices
    assert case.ct.shape == (64, 64, round(320 / sz))
    # DICOM-like orientation: i -> patient left (-x), j -> posterior (-y), k -> superior (+z)
    assert np.allclose(np.sign(np.diag(case.ct.affine)[:3]), [-1, -1, 1])


def test_field_of_view_and_lungs_do_not_depend_on_size() -> None:
    small = make_phantom(seed=5, size=32, n_slices=32)
    large = make_phantom(seed=5, size=64, n_slices=32)
    fov = [n * s for n, s in zip(small.ct.shape, small.ct.spacing, strict=True)]
    assert fov == pytest.approx(
        [n * s for n, s in zip(large.ct.shape, large.ct.spacing, strict=True)]
    )
    volumes = [(p.lung.array > 0).sum() * p.ct.voxel_volume_ml for p in (small, large)]
    assert volumes[0] == pytest.approx(volumes[1], rel=0.1)


def test_lung_volume_is_adult(case_a: Phantom) -> None:
    for label in (1, 2):
        litres = (case_a.lung.array == label).sum() * case_a.ct.voxel_volume_ml / 1000
        assert 1.2 < litres < 4.5


def test_right_lung_is_on_the_patients_right(case_a: Phantom, case_b: Phantom) -> None:
    for case in (case_a, case_b):
        # RAS+: the patient's right is +x
        assert _world(case, case.lung.array == 1)[:, 0].mean() > 40
        assert _world(case, case.lung.array == 2)[:, 0].mean() < -40


def test_lungs_touch_in_front_of_the_mediastinum_in_some_patients() -> None:
    touching = []
    for seed in range(6):
        lung = make_phantom(seed=seed, size=64, n_slices=24, n_lesions=0).lung.array
        touching.append(bool(((lung[:-1] == 1) & (lung[1:] == 2)).any()))
    assert any(touching) and not all(touching)


def test_tissue_densities(case_a: Phantom) -> None:
    ct, lung, lesion = case_a.ct.array, case_a.lung.array > 0, case_a.lesion.array > 0
    assert (ct[:2, :2, :] == -1024).all()  # outside the circular reconstruction field
    assert abs(np.median(ct[28:36, 2:5, :]) + 1000) < 15  # air in front of the chest
    assert -900 < np.median(ct[lung & ~lesion]) < -790  # aerated lung
    assert -750 < np.median(ct[lesion]) < 50  # ground glass and consolidation
    assert np.percentile(ct, 99.95) > 450  # cortical bone
    body = (ct > -300) & ~lung
    assert -120 < np.median(ct[body]) < 80  # fat and soft tissue


def test_sources_differ_in_noise_and_calibration(case_a: Phantom, case_b: Phantom) -> None:
    air_a = case_a.ct.array[28:36, 2:5, :].astype(float)  # in front of the chest
    air_b = case_b.ct.array[28:36, 2:5, :].astype(float)
    assert air_b.std() > 1.3 * air_a.std()  # thin slices are noisier
    offset = SOURCES["B"].offset - SOURCES["A"].offset
    assert np.median(air_b) - np.median(air_a) == pytest.approx(offset, abs=5)


def test_lesions_lie_inside_the_lungs(case_a: Phantom, case_b: Phantom) -> None:
    for case in (case_a, case_b):
        lesion = case.lesion.array > 0
        assert lesion.any()
        assert not (lesion & (case.lung.array == 0)).any()


def test_lesion_count_is_respected() -> None:
    healthy = make_phantom(seed=1, size=32, n_slices=24, n_lesions=0)
    assert not healthy.lesion.array.any()
    sick = make_phantom(seed=1, size=32, n_slices=24, n_lesions=8)
    ml = sick.lesion.array.sum() * sick.ct.voxel_volume_ml
    assert 1 < ml < 2000


def test_same_seed_same_bytes_other_seed_differs(case_a: Phantom) -> None:
    again = make_phantom(seed=3, source="A", size=64, n_lesions=6)
    assert again.ct.array.tobytes() == case_a.ct.array.tobytes()
    assert again.lesion.array.tobytes() == case_a.lesion.array.tobytes()
    assert np.array_equal(again.ct.affine, case_a.ct.affine)
    other = make_phantom(seed=4, source="A", size=64, n_lesions=6)
    assert not np.array_equal(other.ct.array, case_a.ct.array)
    assert not np.array_equal(other.lesion.array, case_a.lesion.array)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        make_phantom(source="C", size=32)
    with pytest.raises(ValueError, match="size"):
        make_phantom(size=4)
    with pytest.raises(ValueError, match="n_lesions"):
        make_phantom(size=32, n_lesions=-1)


def test_write_dataset_layout(tmp_path: Path) -> None:
    files = write_dataset(
        tmp_path, n_train=2, n_validation=1, n_test_seen=1, n_test_unseen=1, size=32
    )
    names = [f.name for f in files]
    assert names == [
        "volume-covid19-A-0000_ct.nii.gz",
        "volume-covid19-A-0001_ct.nii.gz",
        "volume-covid19-A-0002_ct.nii.gz",
        "volume-covid19-A-0003_ct.nii.gz",
        "volume-covid19-B-0004_ct.nii.gz",
    ]
    assert [f.parent.name for f in files] == ["Train", "Train", "Validation", "Test", "Test"]
    for ct_path in files:
        case = ct_path.name.removesuffix("_ct.nii.gz")
        seg = nib.load(ct_path.parent / f"{case}_seg.nii.gz")
        lung = nib.load(tmp_path / "lungs" / f"{case}_lung.nii.gz")
        ct = nib.load(ct_path)
        assert seg.get_data_dtype() == np.uint8 and lung.get_data_dtype() == np.uint8
        assert np.allclose(seg.affine, ct.affine) and seg.shape == ct.shape == lung.shape


def test_cli_writes_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["phantom", "-o", str(tmp_path / "d"), "--train", "1", "--validation", "0"]
    args += ["--test-seen", "0", "--test-unseen", "0", "--size", "32"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "d" / "Train" / "volume-covid19-A-0000_seg.nii.gz").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "not empty" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(("size", "n_slices"), [(33, 1), (17, 3)])
def test_odd_sizes_and_few_slices(size: int, n_slices: int) -> None:
    case = make_phantom(seed=2, size=size, n_slices=n_slices)
    assert case.ct.shape == case.lung.shape == (size, size, n_slices)
    assert not (case.lesion.array.astype(bool) & (case.lung.array == 0)).any()


def test_tube_drawing_has_the_tube_volume() -> None:
    from covseg.phantom._grid import Grid, sample_polyline, splat_tubes

    grid = Grid((48, 48, 40), (1.0, 1.0, 1.5))
    points, radii = sample_polyline(np.array([[-15.0, 0, 0], [15.0, 0, 0]]), np.array([6, 6]), 0.6)
    covered = splat_tubes(grid, points, radii).sum() * 1.5  # mm^3
    capsule = np.pi * 6**2 * 30 + 4 / 3 * np.pi * 6**3
    assert covered == pytest.approx(capsule, rel=0.03)


def test_sparse_resampling_equals_full_resampling() -> None:
    from covseg.phantom._grid import Grid, Sampling

    sampling = Sampling.for_output(Grid((64, 64, 12), (0.74, 0.74, 5.0)))
    values = np.zeros(sampling.working.shape, dtype=np.float32)
    values[5:9, 20:28, 7:12] = np.random.default_rng(0).random((4, 8, 5))
    assert np.array_equal(sampling.to_output_sparse(values), sampling.to_output(values))
