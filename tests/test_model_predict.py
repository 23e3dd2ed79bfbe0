"""covseg predict: masks with exactly the input's geometry (any orientation, anisotropic,
oblique), named by case id; bad scans reported by name while the batch goes on."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from model_fixtures import one_thread, tiny_model  # noqa: F401 (fixture)
from typer.testing import CliRunner

from covseg.cli import app
from covseg.io import Volume, read_volume, write_volume
from covseg.metrics import dice
from covseg.model.plan import PlanError, load_preset
from covseg.model.predict import segment
from covseg.phantom import make_phantom

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def phantom() -> Volume:
    return make_phantom(seed=3, source="A", size=64, n_slices=24).ct


def reoriented(ct: Volume, perm: tuple[int, int, int], flips: tuple[int, ...]) -> Volume:
    """The same physical image stored with permuted and flipped axes."""
    array = np.transpose(np.asarray(ct.array), perm)
    affine = ct.affine.copy()
    affine[:3, :3] = ct.affine[:3, :3][:, perm]
    for axis in flips:
        array = np.flip(array, axis)
        affine[:3, 3] += affine[:3, axis] * (array.shape[axis] - 1)
        affine[:3, axis] *= -1
    return Volume(np.ascontiguousarray(array), affine)


def oblique(ct: Volume, degrees: float) -> Volume:
    """The image rotated in the world about the z axis (an oblique, anisotropic grid)."""
    t = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return Volume(ct.array, rot @ ct.affine)


def run_predict(model: Path, out: Path, *inputs: Path, extra: tuple[str, ...] = ()):  # noqa: ANN201
    args = ["predict", *map(str, inputs), "-m", str(model), "-o", str(out), "--no-progress"]
    return CliRunner().invoke(app, [*args, *extra])


def test_mask_has_the_input_geometry_in_any_orientation(tmp_path: Path, phantom: Volume) -> None:
    model = tiny_model(tmp_path / "model", "inference.lung_crop=false")
    variants = {
        "volume-covid19-A-0001": phantom,
        "volume-covid19-A-0002": reoriented(phantom, (1, 0, 2), (0,)),
        "volume-covid19-A-0003": reoriented(phantom, (2, 1, 0), (1, 2)),
        "volume-covid19-A-0004": oblique(phantom, 17.0),
    }
    for case_id, ct in variants.items():
        write_volume(ct, tmp_path / "in" / f"{case_id}_ct.nii.gz")
    result = run_predict(model, tmp_path / "out", tmp_path / "in", extra=("--no-burden",))
    assert result.exit_code == 0, result.output
    masks = {}
    for case_id, ct in variants.items():
        img = nib.load(tmp_path / "out" / f"{case_id}.nii.gz")  # named by case id
        assert img.shape == ct.shape
        np.testing.assert_allclose(img.affine, ct.affine, atol=1e-4)
        masks[case_id] = np.asarray(img.dataobj)
    # The same physical image gives the same mask, voxel for voxel, however it is stored.
    same = reoriented(Volume(masks["volume-covid19-A-0001"], phantom.affine), (1, 0, 2), (0,))
    np.testing.assert_array_equal(masks["volume-covid19-A-0002"], same.array)
    same = reoriented(Volume(masks["volume-covid19-A-0001"], phantom.affine), (2, 1, 0), (1, 2))
    np.testing.assert_array_equal(masks["volume-covid19-A-0003"], same.array)


def test_lung_crop_probability_and_burden(tmp_path: Path, phantom: Volume) -> None:
    model = tiny_model(tmp_path / "model", folds=2)
    write_volume(phantom, tmp_path / "scan.nrrd")
    result = run_predict(model, tmp_path / "out", tmp_path / "scan.nrrd", extra=("--probability",))
    assert result.exit_code == 0, result.output
    mask = read_volume(tmp_path / "out" / "scan.nii.gz")
    prob = read_volume(tmp_path / "out" / "probability" / "scan.nii.gz")
    assert mask.same_geometry(phantom) and prob.same_geometry(phantom)
    assert 0.0 <= float(prob.array.min()) and float(prob.array.max()) <= 1.0
    assert (tmp_path / "out" / "burden" / "scan.json").is_file()


def test_bad_scans_are_named_and_the_batch_goes_on(tmp_path: Path, phantom: Volume) -> None:
    model = tiny_model(tmp_path / "model", "inference.lung_crop=false")
    write_volume(phantom, tmp_path / "in" / "good.nii.gz")
    write_volume(Volume(np.zeros((32, 32), np.int16)), tmp_path / "in" / "flat.nii.gz")
    write_volume(phantom.with_array(np.clip(phantom.array, 0, 255)), tmp_path / "in" / "png.nii.gz")
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not a nifti")
    inputs = [tmp_path / "in" / n for n in ("good.nii.gz", "flat.nii.gz", "png.nii.gz")]
    result = run_predict(model, tmp_path / "out", *inputs, tmp_path / "in" / "broken.nii.gz")
    assert result.exit_code == 1
    assert "flat.nii.gz: not a 3D CT" in result.output
    assert "png.nii.gz: not a CT in HU" in result.output
    assert "broken.nii.gz" in result.output and "Traceback" not in result.output
    assert (tmp_path / "out" / "good.nii.gz").is_file()


def test_a_corrupt_checkpoint_is_refused_by_name(tmp_path: Path, phantom: Volume) -> None:
    model = tiny_model(tmp_path / "model")
    (model / "fold_0" / "best.pt").write_bytes(b"garbage")
    write_volume(phantom, tmp_path / "scan.nii.gz")
    result = run_predict(model, tmp_path / "out", tmp_path / "scan.nii.gz")
    assert result.exit_code == 1 and "best.pt: corrupt checkpoint" in result.output


class Threshold(torch.nn.Module):
    """A 'network' that calls lesion wherever the scaled intensity passes 0.5 (steep logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 40.0 * (x - 0.5)], dim=1)


def test_probabilities_resampled_to_a_finer_scan_follow_the_true_boundary() -> None:
    # A 15 mm ball on a 0.7 mm grid, segmented on the baseline's 1.25 x 1.25 x 5 mm grid: the
    # labels brought back by nearest neighbour keep the coarse grid's steps; probabilities
    # interpolated first, then thresholded, follow the ball more closely.
    shape, spacing = (64, 64, 64), (0.7, 0.7, 0.7)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    ball = x**2 + y**2 + z**2 <= 15.0**2
    ct = Volume(np.where(ball, 500.0, -1000.0).astype(np.float32), np.diag([*spacing, 1.0]))
    plan = load_preset("baseline")
    plan["inference"].update(lung_crop=False, roi_size=[32, 32, 16])
    scores = {}
    for resample in ("labels", "probabilities"):
        plan["inference"]["resample"] = resample
        result = segment(ct, [Threshold()], plan, probability=True)
        mask = result.mask.array > 0
        scores[resample] = dice(mask, ball)
        assert result.probability is not None
        lesion_prob = result.probability.array
        assert lesion_prob.min() >= 0.0 and lesion_prob.max() <= 1.0
        if resample == "probabilities":  # the mask is the probability map at 0.5
            np.testing.assert_array_equal(mask, lesion_prob > 0.5)
    assert scores["probabilities"] > 0.94  # measured 0.949; labels 0.930
    assert scores["probabilities"] > scores["labels"] + 0.01
    plan["inference"]["resample"] = "nearest"
    with pytest.raises(PlanError, match="inference.resample"):
        segment(ct, [Threshold()], plan)


def test_lung_crop_and_outside_lung_keep_dense_lung_the_lung_mask_misses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A right lung consolidated in its lower half: with a network that calls everything lesion,
    the crop and the outside-lung post-processing (the thorax, not the lung mask) keep all of it.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_lung import _chest_slice

    from covseg.lung import lung_mask
    from covseg.model.plan import apply_overrides

    slab, _ = _chest_slice(0)
    ct = np.repeat(slab, 30, axis=2)
    ct[:, :, 24:] = np.where(slab > -500, slab, 40)
    lung = (ct > -950) & (ct < -500)
    dense = lung & (np.arange(ct.shape[2]) < 12)[None, None, :]
    dense &= (np.arange(ct.shape[0]) > 150)[:, None, None]  # the right lung, slices 0-11
    ct[dense] = 35
    volume = Volume(ct, np.diag([1.0, 1.0, 2.0, 1.0]))
    assert (lung_mask(volume).array > 0)[dense].mean() < 0.5  # the lung mask misses it

    def everything(image: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        shape = image.shape[1:]
        return torch.stack([torch.zeros(shape), torch.ones(shape)])

    monkeypatch.setattr("covseg.model.predict.predict_probabilities", everything)
    plan = apply_overrides(
        load_preset("baseline"),
        [
            "inference.lung_crop=true",
            "postprocess.outside_lung=true",
            "inference.tta=false",
            "preprocessing.spacing_mm=[4.0, 4.0, 4.0]",
        ],
    )
    mask = segment(volume, [], plan).mask.array > 0
    assert mask[dense].all()


def test_a_folder_of_dcm_slices_of_one_series_is_one_scan(
    tmp_path: Path, shared_data: Path
) -> None:
    import shutil

    from covseg.model.batch import find_inputs

    series = tmp_path / "chest"
    series.mkdir()
    for i, f in enumerate(sorted((shared_data / "totalseg" / "example_ct_dicom").iterdir())):
        shutil.copy(f, series / f"{i:03d}.dcm")  # the same slices, named as many tools name them
    assert find_inputs([series]) == [("chest", series)]
    # Single-slice DICOM files of different series stay separate scans (as before).
    singles = tmp_path / "singles"
    singles.mkdir()
    for name in ("0.dcm",):
        shutil.copy(shared_data / "lungmask-dicom" / name, singles / name)
    assert [case for case, _ in find_inputs([singles])] == ["0"]
