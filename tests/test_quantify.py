"""Lesion burden: known spheres in known lungs, sides, severity bands, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_fixtures import one_thread, tiny_model  # noqa: F401 (fixture)
from typer.testing import CliRunner

from covseg.cli import app
from covseg.io import Volume, write_mask, write_volume
from covseg.phantom import make_phantom, write_dataset
from covseg.quantify import KEYS, quantify, severity, write_overlay

SPACING = (0.8, 0.8, 2.0)


def _chest() -> tuple[Volume, Volume, np.ndarray]:
    """A box chest: right lung at large x (RAS+), left lung at small x, two sphere lesions.

    Right lung: a sphere of radius 12 mm, its x > centre half ground glass (-500 HU) and the
    other half consolidation (+20 HU); left lung: a sphere of radius 6 mm of ground glass.
    """
    shape = (120, 80, 40)
    ct = np.zeros(shape, np.int16)
    lung = np.zeros(shape, np.uint8)
    lung[65:110, 10:70, 5:35] = 1
    lung[10:55, 10:70, 5:35] = 2
    ct[lung > 0] = -850
    grid = np.indices(shape).astype(float)
    lesion = np.zeros(shape, bool)
    for centre, radius in (((87, 40, 20), 12.0), ((32, 40, 20), 6.0)):
        dist = np.sqrt(
            sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, SPACING, strict=True))
        )
        lesion |= dist <= radius
    ct[lesion] = -500
    ct[lesion & (grid[0] > 87) & (lung == 1)] = 20
    affine = np.diag([*SPACING, 1.0])
    return Volume(ct, affine), Volume(lung, affine.copy()), lesion


def test_known_spheres() -> None:
    ct, lung, lesion = _chest()
    record = quantify(ct, lesion, lung)
    assert tuple(record) == KEYS
    voxel_ml = 0.8 * 0.8 * 2.0 / 1000
    right_ml = (lung.array == 1).sum() * voxel_ml
    big = 4 / 3 * np.pi * 12.0**3 / 1000  # mL of the right sphere
    assert record["lesion_count"] == 2
    assert record["largest_lesion_ml"] == pytest.approx(big, rel=0.03)
    assert record["lesion_ml"] == pytest.approx(lesion.sum() * voxel_ml)
    assert record["right_lung_ml"] == pytest.approx(right_ml)
    assert record["lung_ml"] == pytest.approx((lung.array > 0).sum() * voxel_ml)
    right_lesion = (lesion & (lung.array == 1)).sum() * voxel_ml
    assert record["right_involvement_pct"] == pytest.approx(100 * right_lesion / right_ml)
    assert record["consolidation_ml"] == pytest.approx(
        ((ct.array >= -200) & lesion).sum() * voxel_ml
    )
    assert record["consolidation_ml"] == pytest.approx(big / 2, rel=0.08)
    assert record["ggo_ml"] + record["consolidation_ml"] == pytest.approx(record["lesion_ml"])


def test_model_classes_replace_the_hu_split() -> None:
    from covseg.quantify import split_method

    ct, lung, lesion = _chest()
    # A model calling the left third of every lesion consolidation, whatever its HU.
    classes = np.where(lesion, 1, 0).astype(np.uint8)
    third = lesion & (np.indices(lesion.shape)[0] < 60)
    classes[third] = 2
    record = quantify(ct, lesion, lung, classes)
    voxel_ml = 0.8 * 0.8 * 2.0 / 1000
    assert record["consolidation_ml"] == pytest.approx(third.sum() * voxel_ml)
    assert record["ggo_ml"] == pytest.approx((lesion & ~third).sum() * voxel_ml)
    assert record["consolidation_ml"] != quantify(ct, lesion, lung)["consolidation_ml"]
    assert split_method(classes).startswith("model classes")
    assert split_method(None).startswith("HU threshold")
    with pytest.raises(ValueError, match="classes shape"):
        quantify(ct, lesion, lung, classes[:-1])
    assert record["right_severity"] == severity(record["right_involvement_pct"]) == 2
    assert record["left_severity"] == 1


def test_lesion_outside_the_lung_mask_joins_its_lung() -> None:
    ct, lung, lesion = _chest()
    carved = lung.array.copy()
    carved[lesion & (lung.array == 1) & (np.indices(lesion.shape)[0] > 87)] = 0  # mask missed it
    record = quantify(ct, lesion, Volume(carved, lung.affine))
    full = quantify(ct, lesion, lung)
    for key in ("right_lung_ml", "right_involvement_pct", "involvement_pct"):
        assert record[key] == pytest.approx(full[key])


def test_severity_bands() -> None:
    grades = [severity(p) for p in (0.0, 0.1, 4.99, 5.0, 25.0, 25.5, 50.0, 50.5, 75.0, 75.1, 100)]
    assert grades == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_no_lesion_and_bad_shape() -> None:
    ct, lung, lesion = _chest()
    record = quantify(ct, np.zeros_like(lesion), lung)
    assert record["lesion_ml"] == 0 and record["lesion_count"] == 0
    assert record["left_severity"] == record["right_severity"] == 0
    with pytest.raises(ValueError, match="shape"):
        quantify(ct, lesion[:, :, :-1], lung)


def test_phantom_with_computed_lung_mask() -> None:
    case = make_phantom(seed=5, source="A", size=96)
    record = quantify(case.ct, case.lesion.array)
    truth = quantify(case.ct, case.lesion.array, case.lung)
    assert record["lesion_ml"] == pytest.approx(truth["lesion_ml"])
    assert record["lung_ml"] == pytest.approx(truth["lung_ml"], rel=0.05)
    assert record["involvement_pct"] == pytest.approx(truth["involvement_pct"], rel=0.05)


def test_overlay_png(tmp_path: Path) -> None:
    ct, lung, lesion = _chest()
    path = write_overlay(ct, lesion, lung, tmp_path / "o.png", "test")
    from PIL import Image

    with Image.open(path) as img:
        assert img.size[0] > 600


def _run(*args: str) -> object:
    return CliRunner().invoke(app, ["quantify", *args])


def test_command_one_scan_and_errors(tmp_path: Path) -> None:
    case = make_phantom(seed=2, source="A", size=64)
    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    seg = write_mask(case.lesion.array, case.ct, tmp_path / "case_seg.nii.gz")
    out = tmp_path / "out"
    result = _run(str(ct), str(seg), "-o", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "case.json").read_text())
    assert tuple(record) == (*KEYS, "ggo_split")
    assert record["ggo_split"] == "HU threshold: consolidation at -200 HU and above"
    assert (out / "case_overlay.png").stat().st_size > 10_000
    assert len(pd.read_csv(out / "quantify.csv")) == 1

    cut = Volume(case.ct.array[:, :, :-2])
    other = write_mask(case.lesion.array[:, :, :-2], cut, tmp_path / "x.nii.gz")
    wrong = _run(str(ct), str(other), "-o", str(out))
    assert wrong.exit_code == 1 and "x.nii.gz: 62 voxels along axis 2 (S), the CT has 64" in (
        wrong.output.replace("\n", " ")
    )
    assert "Traceback" not in wrong.output


def test_command_reorients_a_mask_stored_in_another_axis_order(tmp_path: Path) -> None:
    """The lesion mask written with j reversed and i, j swapped: the same voxels, same burden."""
    case = make_phantom(seed=2, source="A", size=64)
    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    seg = write_mask(case.lesion.array, case.ct, tmp_path / "case_seg.nii.gz")
    # Stored axis 0 = CT axis 1 reversed, stored axis 1 = CT axis 0: voxel (a, b, c) of the
    # stored array is CT voxel (b, n1 - 1 - a, c).
    n1 = case.ct.shape[1]
    to_ct = np.array([[0, 1, 0, 0], [-1, 0, 0, n1 - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    stored = np.transpose(case.lesion.array, (1, 0, 2))[::-1].astype(np.uint8)
    other = write_volume(Volume(stored, case.ct.affine @ to_ct), tmp_path / "other" / "case.nii.gz")
    first = _run(str(ct), str(seg), "-o", str(tmp_path / "a"))
    second = _run(str(ct), str(other), "-o", str(tmp_path / "b"))
    assert first.exit_code == second.exit_code == 0, second.output
    a = json.loads((tmp_path / "a" / "case.json").read_text())
    b = json.loads((tmp_path / "b" / "case.json").read_text())
    assert a == b and a["lesion_ml"] > 0


def test_command_batch_goes_on_after_a_bad_scan(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, n_train=2, n_validation=0, n_test_seen=0, n_test_unseen=0, size=64)
    bad = next((data / "Train").glob("*_ct.nii.gz"))
    write_volume(Volume(np.full((64, 64, 8), 0.5, np.float32)), bad)  # scaled to 0..1
    result = _run(str(data), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "not in HU" in result.output or "scaled" in result.output
    table = pd.read_csv(tmp_path / "out" / "quantify.csv", keep_default_na=False)
    assert len(table) == 2 and (table["error"] == "").sum() == 1


def test_lungs_alone_without_a_mask(tmp_path: Path) -> None:
    """No mask, no model: the lung volumes of the lung mask, every lesion key null, a note."""
    from covseg.lung import lung_mask
    from covseg.quantify import LESION_KEYS, LUNGS_ONLY_NOTE

    case = make_phantom(seed=2, source="A", size=64)
    record = quantify(case.ct, None)
    assert tuple(record) == KEYS
    lungs = lung_mask(case.ct).array
    assert record["right_lung_ml"] == pytest.approx((lungs == 1).sum() * case.ct.voxel_volume_ml)
    assert record["lung_ml"] == pytest.approx((lungs > 0).sum() * case.ct.voxel_volume_ml)
    assert all(record[k] is None for k in LESION_KEYS) and "lesion_ml" in LESION_KEYS

    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    result = _run(str(ct), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "case.json").read_text())
    assert saved["lesion_ml"] is None and saved["note"] == LUNGS_ONLY_NOTE
    assert saved["lung_ml"] == pytest.approx(record["lung_ml"])
    table = pd.read_csv(tmp_path / "out" / "quantify.csv", keep_default_na=False)
    assert table.loc[0, "lesion_ml"] == "" and table.loc[0, "note"] == LUNGS_ONLY_NOTE


def test_multi_label_mask_is_refused_unless_a_label_is_picked(tmp_path: Path) -> None:
    """An organ segmentation is not a lesion mask: one line naming its labels; --label N picks."""
    case = make_phantom(seed=2, source="A", size=64)
    labels = case.lesion.array.astype(np.uint8) * 3
    labels[:4] = 7  # another "organ"
    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    seg = write_mask(labels, case.ct, tmp_path / "organs.nii.gz")
    refused = _run(str(ct), str(seg), "-o", str(tmp_path / "out"))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "organs.nii.gz: not a 0/1 lesion mask (3 labels found: 0, 3, 7)" in refused.output
    picked = _run(str(ct), str(seg), "--label", "3", "-o", str(tmp_path / "out"))
    assert picked.exit_code == 0, picked.output
    record = json.loads((tmp_path / "out" / "case.json").read_text())
    voxels = (labels == 3).sum()
    assert record["lesion_ml"] == pytest.approx(voxels * case.ct.voxel_volume_ml)


def test_single_dicom_file_keeps_its_folder_in_the_case_id(
    shared_data: Path, tmp_path: Path
) -> None:
    from covseg.datasets import scan_case_id

    dicom = shared_data / "ny-sbu" / "A046441" / "19010101-23.dcm"
    assert scan_case_id(dicom) == "A046441_19010101-23"
    assert scan_case_id(Path("case_ct.nii.gz")) == "case"
    result = _run(str(dicom), "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "A046441_19010101-23.json").is_file()


@pytest.mark.usefixtures("one_thread")
def test_model_segments_then_quantifies(tmp_path: Path) -> None:
    """-m MODEL with a 3D model: the burden of the mask ``covseg predict`` writes."""

    model = tiny_model(tmp_path / "model", "postprocess.min_component_ml=0.0")
    case = make_phantom(seed=2, source="A", size=64)
    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    result = _run(str(ct), "-m", str(model), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    predicted = CliRunner().invoke(
        app, ["predict", str(ct), "-m", str(model), "-o", str(tmp_path / "pred"), "--no-burden"]
    )
    assert predicted.exit_code == 0, predicted.output
    mask = _run(str(ct), str(tmp_path / "pred" / "case.nii.gz"), "-o", str(tmp_path / "ref"))
    assert mask.exit_code == 0, mask.output
    got = json.loads((tmp_path / "out" / "case.json").read_text())
    want = json.loads((tmp_path / "ref" / "case.json").read_text())
    assert got == pytest.approx(want) and got["lesion_ml"] is not None


def test_slices_2d_model_without_weights_is_named(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "plan.yaml").write_text("preset: slices-2d\ndimensions: 2\n")
    case = make_phantom(seed=2, source="A", size=64)
    ct = write_volume(case.ct, tmp_path / "case_ct.nii.gz")
    result = _run(str(ct), "-m", str(model), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and f"{model}: no fold_*/model.pt" in result.output
    assert "Traceback" not in result.output
