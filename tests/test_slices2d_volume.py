"""A ``slices-2d`` model on whole CT volumes: slice choice, orientation, the 2D path's equality,
bad input, and DICOM SEG output read back with highdicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from nibabel.orientations import apply_orientation, inv_ornt_aff
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.io import _LPS_TO_RAS, Volume, read_volume, write_volume
from covseg.lung import thorax_slices
from covseg.model.plan import load_preset
from covseg.model.slices2d import predict_slices_2d
from covseg.model.slices2d.cases import sort_inputs
from covseg.model.slices2d.net import make_network
from covseg.model.slices2d.predict import load_ensemble
from covseg.model.slices2d.volume import segment_volume
from covseg.phantom import make_phantom

runner = CliRunner()


def _random_model(folder: Path) -> Path:
    """A slices-2d model folder with untrained networks: a binary one (fold 0) and a class one
    (fold 1). Their masks are arbitrary but deterministic, which is all that equality and
    orientation checks need."""
    plan = load_preset("slices-2d")
    plan["image_size"] = 32
    plan["network"]["features"] = [4, 4, 8, 8, 16, 4]
    plan["inference"]["min_area_fraction"] = 0.0
    # Volumes at the single slices' sizes, so that the two paths can be compared.
    plan["inference"]["volume_scales"] = plan["inference"]["scales"]
    plan["hu_window"] = [-1100.0, 300.0]
    folder.mkdir(parents=True)
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    for fold, outputs in ((0, 1), (1, 3)):
        torch.manual_seed(fold)
        (folder / f"fold_{fold}").mkdir()
        torch.save(
            make_network(plan["network"], outputs).state_dict(), folder / f"fold_{fold}/model.pt"
        )
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_model(tmp_path_factory.mktemp("models") / "random")


@pytest.fixture(scope="module")
def phantom() -> Volume:
    """A small synthetic chest CT (64 x 64 x 64, 5.9 x 5.9 x 5 mm, RAS-like axes)."""
    return make_phantom(seed=3, size=64).ct


def write_series(ct: Volume, folder: Path, series_uid: str) -> list[Path]:
    """Write a CT as a DICOM series (one slice a file, with a frame of reference)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.asarray(ct.array, dtype=np.int16).transpose(2, 1, 0))
    image.SetSpacing(ct.spacing)
    image.SetOrigin(tuple(_LPS_TO_RAS @ np.asarray(ct.origin)))
    image.SetDirection(tuple((_LPS_TO_RAS @ ct.direction).ravel()))
    d = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(ct.shape[2]):
        plane = image[:, :, k]
        tags = {
            "0008|0060": "CT",
            "0018|0050": f"{ct.spacing[2]:g}",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.8.498.9",
            "0020|000e": series_uid,
            "0020|0052": "1.2.826.0.1.3680043.8.498.7",
            "0020|0013": str(k + 1),
            "0010|0020": "PHANTOM",
            "0020|0032": "\\".join(
                f"{x:.6f}" for x in image.TransformIndexToPhysicalPoint((0, 0, k))
            ),
            "0020|0037": "\\".join(f"{x:.6f}" for x in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        files.append(folder / f"{k:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        writer.Execute(plane)
    return files


def _reoriented(ct: Volume, ornt: np.ndarray) -> Volume:
    """The same CT in another array order (flips and transposes), the world unchanged."""
    array = apply_orientation(np.asarray(ct.array), ornt)
    return Volume(np.ascontiguousarray(array), ct.affine @ inv_ornt_aff(ornt, ct.shape))


def test_thorax_slices_are_the_lung_slices_and_a_margin() -> None:
    lungs = np.zeros((4, 4, 40), bool)
    lungs[1:3, 1:3, 10:20] = True
    # 20 mm at 5 mm a slice: 4 slices either side.
    assert thorax_slices(lungs, 5.0) == range(6, 24)
    # Clipped at the ends of the scan.
    assert thorax_slices(lungs, 1.0) == range(0, 40)


def test_a_volume_slice_gets_the_2d_paths_mask_on_real_dicom(
    model: Path, shared_data: Path, tmp_path: Path
) -> None:
    """lungmask's slices: a one-slice volume's result is the very mask `covseg predict 0.dcm`
    gives (same window, field, sizes, ensemble), and the two-slice series' fields differ from
    them only by the other slice's lungs."""
    series = shared_data / "lungmask-dicom"
    whole = segment_volume(read_volume(series), load_ensemble(model), series)
    assert whole.slices == range(0, 2)
    predict_slices_2d([series / "0.dcm", series / "1.dcm"], model, tmp_path)
    for k in (0, 1):
        path = series / f"{k}.dcm"
        result = segment_volume(read_volume(path), load_ensemble(model), path)
        flat = np.asarray(Image.open(tmp_path / f"{k}.png")) > 0
        classes = np.asarray(Image.open(tmp_path / "classes" / f"{k}.png"))
        # The volume is (column, row, slice); the PNG (row, column).
        assert 0.01 < flat.mean() < 0.99  # a mask worth comparing
        np.testing.assert_array_equal(result.lesion.array[:, :, 0].T, flat)
        assert result.classes is not None
        np.testing.assert_array_equal(result.classes.array[:, :, 0].T, classes)
        # Adjacent 1 mm slices: nearly the same lungs, so nearly the same mask.
        same = np.asarray(whole.lesion.array[:, :, k]) == np.asarray(result.lesion.array[:, :, 0])
        assert same.mean() > 0.97


def test_any_array_order_gives_the_same_mask_in_the_world(model: Path, phantom: Volume) -> None:
    ensemble = load_ensemble(model)
    reference = segment_volume(phantom, ensemble)
    assert reference.lesion.same_geometry(phantom)
    assert 0 < reference.lesion.array.sum() < reference.lesion.array.size
    # Slices outside the thorax range are background.
    outside = np.ones(phantom.shape[2], bool)
    outside[reference.slices.start : reference.slices.stop] = False
    assert not reference.lesion.array[:, :, outside].any()
    # Axial slices along array axis 0, rows and columns flipped and swapped.
    ornt = np.array([[1, -1], [2, 1], [0, -1]], dtype=float)
    other = _reoriented(phantom, ornt)
    result = segment_volume(other, ensemble)
    assert result.lesion.same_geometry(other)
    np.testing.assert_array_equal(
        result.lesion.array, apply_orientation(reference.lesion.array, ornt)
    )
    assert result.classes is not None and reference.classes is not None
    np.testing.assert_array_equal(
        result.classes.array, apply_orientation(reference.classes.array, ornt)
    )


def test_inputs_are_sorted_into_slices_and_volumes(shared_data: Path, tmp_path: Path) -> None:
    found = sort_inputs(
        [
            shared_data / "ny-sbu",  # folders of single-slice series: 2D slices
            shared_data / "lungmask-dicom",  # one series of two slices: a volume
            shared_data / "totalseg" / "chest_cta_crop_1.nii.gz",
            shared_data / "medseg" / "train",  # images/: 2D slices
            tmp_path / "missing",
        ]
    )
    assert len([p for p in found.slices if p.suffix == ".dcm"]) == 20
    assert len([p for p in found.slices if p.suffix == ".jpg"]) == 50
    assert [v.case_id for v in found.volumes] == ["lungmask-dicom", "chest_cta_crop_1"]
    assert found.errors == [f"{tmp_path / 'missing'}: no such file or folder"]


def test_command_writes_volumes_of_the_cts_geometry_and_names_bad_ones(
    model: Path, phantom: Volume, tmp_path: Path
) -> None:
    good = write_volume(phantom, tmp_path / "in" / "chest_ct.nii.gz")
    flat = write_volume(Volume(np.asarray(phantom.array[:, :, 30])), tmp_path / "in" / "flat.nrrd")
    body = np.full((40, 40, 12), -1000, np.int16)
    body[5:35, 5:35] = 40  # soft tissue, no air inside: no lungs
    no_lungs = write_volume(
        Volume(body, np.diag([5.0, 5.0, 5.0, 1.0])), tmp_path / "in" / "belly.nii.gz"
    )
    result = runner.invoke(
        app,
        [
            "predict",
            str(good),
            str(flat),
            str(no_lungs),
            "-m",
            str(model),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in result.output
    assert f"{flat}: a 2D image" in errors[0]
    assert f"{no_lungs}: no lungs in the field of view" in errors[1]
    mask = read_volume(tmp_path / "out" / "chest.nii.gz")
    classes = read_volume(tmp_path / "out" / "chest_classes.nii.gz")
    assert mask.same_geometry(phantom) and classes.same_geometry(phantom)
    assert set(np.unique(classes.array)) <= {0, 1, 2}
    np.testing.assert_array_equal(mask.array, classes.array > 0)
    assert (tmp_path / "out" / "burden" / "chest.json").is_file()


def test_a_bad_slice_is_one_line_and_the_other_slices_go_on(
    model: Path, shared_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    (folder / "a_broken.png").write_bytes(b"not a png")
    Image.fromarray(np.full((40, 50), 90, np.uint8)).save(folder / "b_fine.png")
    broken_dicom = tmp_path / "cut.dcm"
    broken_dicom.write_bytes((shared_data / "lungmask-dicom/1.dcm").read_bytes()[:2000])
    args = ["predict", str(folder), str(broken_dicom), str(shared_data / "lungmask-dicom/0.dcm")]
    result = runner.invoke(app, [*args, "-m", str(model), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in result.output
    assert str(folder / "a_broken.png") in errors[0] and "not a readable image" in errors[0]
    assert str(broken_dicom) in errors[1] and "not a readable DICOM slice" in errors[1]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "b_fine.png"]
    assert "2 of 4 slices and volumes segmented" in result.output
    # A DICOM slice without lungs (NY-SBU's abdominal slice) is refused as a volume without
    # lungs is: one line, nothing written for it.
    abdomen = shared_data / "ny-sbu" / "A027284" / "19000925-116.dcm"
    out = tmp_path / "abdomen"
    result = runner.invoke(app, ["predict", str(abdomen), "-m", str(model), "-o", str(out)])
    assert result.exit_code == 1
    assert f"error: {abdomen}: no lungs in the field of view" in result.output
    assert not list(out.glob("*.png"))


def test_a_folder_with_two_series_names_them_and_series_picks_one(
    model: Path, phantom: Volume, tmp_path: Path
) -> None:
    folder = tmp_path / "study"
    write_series(phantom, folder / "a", "1.2.826.0.1.3680043.8.498.11")
    write_series(
        _reoriented(phantom, np.array([[0, 1], [1, 1], [2, 1]], float)),
        folder / "b",
        "1.2.826.0.1.3680043.8.498.12",
    )
    for f in (folder / "b").iterdir():
        f.rename(folder / "a" / f"b{f.name}")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(folder / "a"), "-m", str(model), "-o", str(out)])
    assert result.exit_code == 1
    assert "2 DICOM series (1.2.826.0.1.3680043.8.498.11 (64 files)" in result.output
    assert "pick one with --series UID" in result.output
    result = runner.invoke(
        app,
        [
            "predict",
            str(folder / "a"),
            "-m",
            str(model),
            "-o",
            str(out),
            "--series",
            "1.2.826.0.1.3680043.8.498.12",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_volume(out / "a.nii.gz").same_geometry(phantom)


def test_dicom_seg_over_a_real_series_reads_back(shared_data: Path, tmp_path: Path) -> None:
    """A mask on TotalSegmentator's 20-slice series as a DICOM SEG: frames only where the mask
    is, each at its source slice's position, referencing it, with the mask's pixels."""
    import highdicom as hd
    import pydicom

    from covseg.dicom_seg import LESION, write_dicom_seg
    from covseg.io import dicom_series

    folder = shared_data / "totalseg" / "example_ct_dicom"
    (files,) = dicom_series(folder).values()
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[100:200, 300:350, 5:9] = 1  # columns 100-199, rows 300-349, slices 5-8
    path = write_dicom_seg(mask, files, tmp_path / "seg.dcm", (LESION,), "test lesion")
    seg = hd.seg.segread(str(path))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.NumberOfFrames == 4  # empty slices are left out
    assert seg.SegmentSequence[0].SegmentLabel == "COVID-19 lesion"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
    sources = [pydicom.dcmread(f) for f in files]
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    # This anonymised series keeps its instance UIDs in the file meta header only.
    uids = [s.file_meta.MediaStorageSOPInstanceUID for s in sources]
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(ref)
        assert 5 <= k <= 8
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            [float(x) for x in position], [float(x) for x in sources[k].ImagePositionPatient]
        )
        np.testing.assert_array_equal(seg.pixel_array[frame], mask[:, :, k].T)


def test_dicom_in_dicom_seg_out_matches_the_nifti_masks(
    model: Path, phantom: Volume, tmp_path: Path
) -> None:
    import highdicom as hd

    write_series(phantom, tmp_path / "ct", "1.2.826.0.1.3680043.8.498.21")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["predict", str(tmp_path / "ct"), "-m", str(model), "-o", str(out), "--dicom-seg"]
    )
    assert result.exit_code == 0, result.output
    lesion = read_volume(out / "ct.nii.gz").array
    classes = read_volume(out / "ct_classes.nii.gz").array
    for name, expected in (("ct_seg.dcm", lesion), ("ct_classes_seg.dcm", classes)):
        seg = hd.seg.segread(str(out / name))
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.21"
        numbers = seg.get_segment_numbers()
        # Source slice k is the file written k-th, SOP Instance UID "<series>.<k + 1>".
        uids = [f"1.2.826.0.1.3680043.8.498.21.{k + 1}" for k in range(phantom.shape[2])]
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=True
        )
        np.testing.assert_array_equal(pixels, np.transpose(expected, (2, 1, 0)))


def test_quantify_with_a_slices_2d_model_measures_its_mask(
    model: Path, phantom: Volume, tmp_path: Path
) -> None:
    """`covseg quantify CT -m MODEL` reports the lesion `covseg predict` writes for the CT."""
    import json

    ct = write_volume(phantom, tmp_path / "chest_ct.nii.gz")
    assert (
        runner.invoke(
            app, ["predict", str(ct), "-m", str(model), "-o", str(tmp_path / "p")]
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["quantify", str(ct), "-m", str(model), "-o", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    mask = read_volume(tmp_path / "p" / "chest.nii.gz").array
    record = json.loads((tmp_path / "q" / "chest.json").read_text())
    assert record["lesion_ml"] == pytest.approx(mask.sum() * phantom.voxel_volume_ml, rel=1e-6)
    # The class model's classes, not the HU threshold, split ground glass from consolidation.
    classes = read_volume(tmp_path / "p" / "chest_classes.nii.gz").array
    voxel = phantom.voxel_volume_ml
    assert record["ggo_split"].startswith("model classes")
    assert record["consolidation_ml"] == pytest.approx((classes == 2).sum() * voxel, rel=1e-6)
    assert record["ggo_ml"] == pytest.approx((classes == 1).sum() * voxel, rel=1e-6)
    burden = json.loads((tmp_path / "p" / "burden" / "chest.json").read_text())
    assert burden["consolidation_ml"] == record["consolidation_ml"]
    assert burden["ggo_split"] == record["ggo_split"]


def test_each_slice_is_framed_by_the_lungs_near_it_and_margin_slices_by_the_nearest() -> None:
    from covseg.model.slices2d.volume import lung_boxes

    lungs = np.zeros((400, 400, 30), bool)
    lungs[100:300, 50:350, 10:20] = True  # 200 x 300 px of 1 mm, slices 10-19
    lungs[150:250, 100:300, 14] = False  # a slice whose lung the mask misses
    lungs[100:120, 50:60, 14] = True
    plane = np.zeros((400, 400), np.float32)
    box = lung_boxes(lungs, [1.0, 1.0, 5.0])  # 10 mm reach: 2 slices either side
    assert box(12, plane) == (slice(100, 300), slice(50, 350))
    assert box(14, plane) == (slice(100, 300), slice(50, 350))  # its neighbours' lungs
    assert box(25, plane) == box(19, plane) == (slice(100, 300), slice(50, 350))  # margin
    assert box(0, plane) == (slice(100, 300), slice(50, 350))
    empty = lung_boxes(np.zeros((40, 40, 3), bool), [1.0, 1.0, 1.0])
    body = np.full((40, 40), -1000.0, np.float32)
    body[10:30, 5:35] = 40.0
    assert empty(1, body) == (slice(10, 30), slice(5, 35))
