"""Batch evaluation and ``covseg evaluate``: values equal evaluate_case, bad cases fail alone."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.datasets import DatasetError
from covseg.io import Volume, write_mask, write_volume
from covseg.metrics import evaluate_case
from covseg.metrics.batch import (
    AREA_COLUMNS,
    COLUMNS,
    METRICS,
    evaluate_folder,
    score_case_files,
    summarize,
)

SHAPE = (20, 18, 6)
SPACING = (0.75, 0.75, 5.0)
ORIGIN = (-120.0, 80.5, -300.0)


def _reference() -> Volume:
    return Volume.from_geometry(np.zeros(SHAPE, np.int16), SPACING, ORIGIN)


def _truth_mask(shift: int = 0) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[4 + shift : 12 + shift, 5:13, 1:4] = True
    mask[15, 2:4, 4] = True  # a second, small lesion
    return mask


def _dataset(root: Path) -> tuple[Path, Path]:
    """COVID-19-20 truth for A-0001, A-0002, B-0003; predictions for A-0001 and B-0003."""
    ref = _reference()
    truth, pred = root / "truth", root / "pred"
    for n, source in ((1, "A"), (2, "A"), (3, "B")):
        case = f"volume-covid19-{source}-{n:04d}"
        write_volume(ref, truth / f"{case}_ct.nii.gz")
        write_mask(_truth_mask(), ref, truth / f"{case}_seg.nii.gz")
        if n != 2:
            write_mask(_truth_mask(shift=n), ref, pred / f"{case}.nii.gz")
    return pred, truth


def test_scores_equal_evaluate_case_on_the_arrays(tmp_path):
    pred, truth = _dataset(tmp_path)
    row = score_case_files(
        "volume-covid19-B-0003",
        pred / "volume-covid19-B-0003.nii.gz",
        truth / "volume-covid19-B-0003_seg.nii.gz",
        "B",
        tolerance_mm=2.0,
    )
    # NIfTI stores the spacing as float32, so the expected values use the float32 spacing too.
    spacing = tuple(float(np.float32(s)) for s in SPACING)
    expected = evaluate_case(_truth_mask(shift=3), _truth_mask(), spacing, tolerance_mm=2.0)
    assert row["status"] == "ok" and row["error"] == "" and row["subset"] == "unseen"
    for name in METRICS:
        assert row[name] == pytest.approx(expected[name], rel=1e-12), name
    assert 0 < row["dice"] < 1


def test_missing_prediction_scores_an_empty_mask(tmp_path):
    _, truth = _dataset(tmp_path)
    row = score_case_files(
        "volume-covid19-A-0002", None, truth / "volume-covid19-A-0002_seg.nii.gz", "A"
    )
    assert row["status"] == "missing" and row["subset"] == "seen"
    assert row["dice"] == 0.0 and row["pred_ml"] == 0.0 and row["truth_lesions"] == 2
    assert "empty mask" in row["error"]


def _failure(tmp_path: Path, pred: Volume | bytes, label: int | None = None) -> str:
    ref = _reference()
    truth = write_mask(_truth_mask(), ref, tmp_path / "truth.nii.gz")
    path = tmp_path / "pred.nii.gz"
    if isinstance(pred, bytes):
        path.write_bytes(pred)
    else:
        write_volume(pred, path)
    row = score_case_files("c", path, truth, "A", label)
    assert row["status"] == "failed"
    assert all(math.isnan(row[name]) for name in METRICS)
    assert row["error"].startswith(f"{path}: ") and "\n" not in row["error"]
    return row["error"]


def test_prediction_on_another_grid_fails_saying_what_differs(tmp_path):
    mask = _truth_mask().astype(np.uint8)
    mirrored = np.diag([-1.0, 1.0, 1.0])
    turned = np.array([[np.cos(0.1), -np.sin(0.1), 0], [np.sin(0.1), np.cos(0.1), 0], [0, 0, 1]])
    cases = {
        "5 voxels along axis 2 (S), the truth has 6 (shape (20, 18, 5) vs (20, 18, 6))": (
            Volume.from_geometry(mask[..., :5], SPACING, ORIGIN)
        ),
        "spacing 0.8 mm along axis 0 (R), the truth has 0.75 mm (differs by 0.05 mm)": (
            Volume.from_geometry(mask, (0.8, 0.75, 5.0), ORIGIN)
        ),
        # 2 um off along x: 0.002 / 0.75 voxel.
        "grid shifted by 0.002 mm from the truth's (origin (-120.002, 80.5, -300) vs "
        "(-120, 80.5, -300) mm; -0.00267 voxels along axis 0 (R))": (
            Volume.from_geometry(mask, SPACING, (-120.002, 80.5, -300.0))
        ),
        # The x axis mirrored about the same origin: 19 voxels * 0.75 mm = 14.25 mm away.
        "grid shifted by 14.2 mm from the truth's (origin (-134.25, 80.5, -300) vs "
        "(-120, 80.5, -300) mm after reorienting LAS to RAS; -19 voxels along axis 0 (R))": (
            Volume.from_geometry(mask, SPACING, ORIGIN, mirrored)
        ),
        "axes rotated against the truth's by up to 5.73 degrees": (
            Volume.from_geometry(mask, SPACING, ORIGIN, turned)
        ),
    }
    for problem, pred in cases.items():
        assert problem in _failure(tmp_path, pred)


def test_prediction_stored_in_another_axis_order_is_scored_exactly(tmp_path):
    """The same voxels stored as LAS with swapped i/j: reoriented, no interpolation."""
    ref = _reference()
    moved = np.flip(np.transpose(_truth_mask(shift=2), (1, 0, 2)), axis=1).astype(np.uint8)
    # New axis 0 is the old j (+A), new axis 1 the old i reversed (-R: L), starting at old i=19.
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    origin = (ORIGIN[0] + 19 * SPACING[0], ORIGIN[1], ORIGIN[2])
    write_volume(Volume.from_geometry(moved, SPACING, origin, direction), tmp_path / "p.nii.gz")
    write_mask(_truth_mask(), ref, tmp_path / "t.nii.gz")
    row = score_case_files("c", tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", "A")
    spacing = tuple(float(np.float32(s)) for s in SPACING)
    expected = evaluate_case(_truth_mask(shift=2), _truth_mask(), spacing)
    assert row["status"] == "ok", row["error"]
    for name in METRICS:
        assert row[name] == pytest.approx(expected[name], rel=1e-9), name


def test_evaluate_a_totalsegmentator_mask_of_a_dicom_series(shared_data, tmp_path):
    """TotalSegmentator's labels of the DICOM series are LAS, the series LPS: `covseg evaluate`
    scores the file as it is against the labels on the CT's grid (liver, label 5): Dice 1."""
    from covseg.io import read_volume, to_reference_grid

    ct = read_volume(shared_data / "totalseg" / "example_ct_dicom")
    seg_path = shared_data / "totalseg" / "example_seg_dicom.nii.gz"
    on_ct = to_reference_grid(read_volume(seg_path), ct)
    write_mask(on_ct.array, ct, tmp_path / "truth" / "example.nii.gz")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "example.nii.gz").symlink_to(seg_path)
    out = tmp_path / "metrics.csv"
    args = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--label", "5", "--workers", "1"])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok" and row["dice"] == 1.0 and row["nsd"] == 1.0


def test_label_values_nan_and_broken_files_fail(tmp_path):
    ref = _reference()
    two = _truth_mask().astype(np.uint8) * 2
    assert "label values other than 0/1 (2); pick one with --label N" in _failure(
        tmp_path, ref.with_array(two)
    )
    nan = _truth_mask().astype(np.float32)
    nan[0, 0, 0] = np.nan
    assert "contains NaN" in _failure(tmp_path, ref.with_array(nan))
    assert "cannot read image" in _failure(tmp_path, b"not an image at all")
    assert "empty file" in _failure(tmp_path, b"")
    data = write_mask(_truth_mask(), ref, tmp_path / "ok.nii.gz").read_bytes()
    assert "cannot read image" in _failure(tmp_path, data[: len(data) // 2])


def test_label_picks_one_value_of_both_masks(tmp_path):
    ref = _reference()
    labels = _truth_mask().astype(np.uint8) * 2
    labels[0, 0, 0] = 1  # another class, ignored with label=2
    truth = write_volume(ref.with_array(labels), tmp_path / "truth.nii.gz")
    pred = write_volume(ref.with_array(labels), tmp_path / "pred.nii.gz")
    row = score_case_files("c", pred, truth, "A", label=2)
    assert row["status"] == "ok" and row["dice"] == 1.0
    assert row["truth_ml"] == pytest.approx(_truth_mask().sum() * np.prod(SPACING) / 1000, 1e-6)


def test_unreadable_truth_is_a_failed_row_not_an_exception(tmp_path):
    (tmp_path / "truth.nii.gz").write_text("garbage")
    row = score_case_files("c", None, tmp_path / "truth.nii.gz", "")
    assert row["status"] == "failed" and str(tmp_path / "truth.nii.gz") in row["error"]


def test_2d_png_masks_0_255(tmp_path):
    truth = np.zeros((30, 20), np.uint8)
    truth[5:15, 3:9] = 255
    pred = np.roll(truth, 2, axis=0)
    for folder, array in (("slices/lesion", truth), ("pred", pred)):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(array).save(tmp_path / folder / "7.png")
    table = evaluate_folder(tmp_path / "pred", tmp_path / "slices", workers=1, progress=False)
    (row,) = table.to_dict("records")
    expected = evaluate_case(pred > 0, truth > 0, (1.0, 1.0))
    assert row["case"] == "7" and row["status"] == "ok"
    assert row["dice"] == pytest.approx(expected["dice"]) == pytest.approx(2 * 48 / 120)
    # A slice has no volume and a PNG no spacing: areas in pixels (10 x 6 each), no mL, no mm^2.
    assert tuple(table.columns) == (*COLUMNS[:-2], *AREA_COLUMNS, "status", "error")
    assert (row["truth_px"], row["pred_px"]) == (60.0, 60.0)
    assert all(math.isnan(row[k]) for k in ("truth_ml", "pred_ml", "truth_mm2", "pred_mm2"))
    # Its id has no source letter: neither seen nor unseen.
    assert row["source"] == "" and row["subset"] == "unknown"
    summary = summarize(table)
    assert summary["unknown"]["n"] == 1 and summary["unseen"]["n"] == summary["seen"]["n"] == 0
    assert summary["unknown"]["truth_px"]["mean"] == 60.0
    assert summary["all"]["truth_ml"]["n"] == 0


def test_2d_slice_with_a_spacing_reports_mm2(tmp_path):
    """A 2D NRRD keeps its pixel spacing: 0.5 x 0.8 mm, so a pixel is 0.4 mm^2."""
    truth = np.zeros((30, 20), np.uint8)
    truth[5:15, 3:13] = 1  # 100 pixels
    pred = truth.copy()
    pred[5:7] = 0  # 80 pixels
    for name, array in (("truth", truth), ("pred", pred)):
        write_volume(Volume(array, np.diag([0.5, 0.8, 1.0, 1.0])), tmp_path / name / "c.nrrd")
    (row,) = evaluate_folder(
        tmp_path / "pred", tmp_path / "truth", workers=1, progress=False
    ).to_dict("records")
    assert row["status"] == "ok", row["error"]
    assert (row["truth_px"], row["pred_px"]) == (100.0, 80.0)
    assert row["truth_mm2"] == pytest.approx(40.0) and row["pred_mm2"] == pytest.approx(32.0)
    assert math.isnan(row["truth_ml"])


def test_cli_summary_shows_the_subsets_present(tmp_path):
    """Two cases from source A, one without a source: columns all, seen and unknown."""
    ref = _reference()
    for case in ("volume-covid19-A-0001", "volume-covid19-A-0002", "patient7"):
        write_mask(_truth_mask(), ref, tmp_path / "truth" / f"{case}.nii.gz")
        write_mask(_truth_mask(shift=1), ref, tmp_path / "pred" / f"{case}.nii.gz")
    out = tmp_path / "metrics.csv"
    args = ["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    subsets = pd.read_csv(out).set_index("case")["subset"]
    assert subsets.to_dict() == {
        "volume-covid19-A-0001": "seen",
        "volume-covid19-A-0002": "seen",
        "patient7": "unknown",
    }
    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert "all (n=3)" in header and "seen (n=2)" in header and "unknown (n=1)" in header
    assert "unseen" not in result.stdout
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert [summary[s]["n"] for s in ("all", "seen", "unseen", "unknown")] == [3, 2, 0, 1]


def test_folder_rows_columns_and_isolated_failures(tmp_path):
    pred, truth = _dataset(tmp_path)
    # Two files for B-0003 make that case ambiguous; an extra prediction has no truth.
    write_mask(_truth_mask(), _reference(), pred / "volume-covid19-B-0003_seg.nii.gz")
    write_mask(_truth_mask(), _reference(), pred / "volume-covid19-B-0099.nii.gz")
    table = evaluate_folder(pred, truth, workers=2, progress=False)
    assert tuple(table.columns) == COLUMNS
    assert table["case"].tolist() == [
        "volume-covid19-A-0001",
        "volume-covid19-A-0002",
        "volume-covid19-B-0003",
    ]
    assert table["status"].tolist() == ["ok", "missing", "failed"]
    assert table["subset"].tolist() == ["seen", "seen", "unseen"]
    assert "several predictions for case volume-covid19-B-0003" in table["error"].iloc[2]
    assert table.attrs["unmatched_predictions"] == [str(pred / "volume-covid19-B-0099.nii.gz")]
    one_worker = evaluate_folder(pred, truth, workers=1, progress=False)
    pd.testing.assert_frame_equal(table, one_worker)


def test_dask_scheduler_gives_the_same_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    pred, truth = _dataset(tmp_path)
    local = evaluate_folder(pred, truth, workers=1, progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        on_dask = evaluate_folder(pred, truth, scheduler=cluster.scheduler_address, progress=False)
    pd.testing.assert_frame_equal(local, on_dask)


def test_duplicate_truth_ids_and_flat_truth_folders(tmp_path):
    pred, truth = _dataset(tmp_path)
    write_mask(_truth_mask(), _reference(), truth / "volume-covid19-A-0001_seg.nii")
    table = evaluate_folder(pred, truth, workers=1, progress=False).set_index("case")
    assert table.loc["volume-covid19-A-0001", "status"] == "failed"
    assert "duplicate case id" in table.loc["volume-covid19-A-0001", "error"]
    assert table.loc["volume-covid19-B-0003", "status"] == "ok"
    # A flat folder of masks named by case id is truth too.
    flat = evaluate_folder(pred, pred, workers=1, progress=False)
    assert set(flat["status"]) == {"ok"} and set(flat["dice"]) == {1.0}


def test_folders_that_cannot_be_evaluated(tmp_path):
    pred, truth = _dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no such folder"):
        evaluate_folder(tmp_path / "absent", truth, progress=False)
    with pytest.raises(DatasetError, match="empty: no prediction files"):
        evaluate_folder(tmp_path / "empty", truth, progress=False)
    with pytest.raises(DatasetError, match="empty: no cases found"):
        evaluate_folder(pred, tmp_path / "empty", progress=False)
    for label in truth.glob("*_seg.nii.gz"):
        label.unlink()
    with pytest.raises(DatasetError, match="3 case.s. found but no masks"):
        evaluate_folder(pred, truth, progress=False)


def test_summarize_by_subset_leaves_out_failed_and_infinite_values():
    rows = [
        ("a", "seen", 0.8, 2.0, "ok"),
        ("b", "seen", 0.6, 4.0, "ok"),
        ("c", "unseen", 0.0, math.inf, "missing"),
        ("d", "unseen", 0.4, 3.0, "ok"),
        ("e", "unseen", math.nan, math.nan, "failed"),
    ]
    table = pd.DataFrame(
        [
            {
                **dict.fromkeys(METRICS, 1.0),
                "case": c,
                "source": "",
                "subset": s,
                "dice": d,
                "hd95": h,
                "status": st,
            }
            for c, s, d, h, st in rows
        ]
    )
    summary = summarize(table)
    assert summary["cases"] == {"ok": 3, "missing": 1, "failed": 1}
    assert summary["all"]["n"] == 4 and summary["unseen"]["n"] == 2
    assert summary["all"]["dice"]["mean"] == pytest.approx(0.45)
    assert summary["all"]["dice"]["median"] == pytest.approx(0.5)
    assert summary["all"]["dice"]["std"] == pytest.approx(np.std([0.8, 0.6, 0.0, 0.4], ddof=1))
    assert summary["seen"]["dice"]["mean"] == pytest.approx(0.7)
    assert summary["unseen"]["hd95"] == {
        "mean": 3.0,
        "std": None,
        "median": 3.0,
        "n": 1,
        "infinite": 1,
    }
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN or Infinity


def test_cli_writes_csv_and_summary_and_reports_failures(tmp_path):
    pred, truth = _dataset(tmp_path)
    (pred / "volume-covid19-B-0003.nii.gz").write_text("broken")
    out = tmp_path / "out" / "metrics.csv"
    result = CliRunner().invoke(
        app, ["evaluate", str(pred), str(truth), "-o", str(out), "--workers", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert tuple(table.columns) == COLUMNS
    assert table["status"].tolist() == ["ok", "missing", "failed"]
    summary = json.loads((tmp_path / "out" / "metrics_summary.json").read_text())
    assert summary["cases"] == {"ok": 1, "missing": 1, "failed": 1}
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(f"failed: {pred / 'volume-covid19-B-0003.nii.gz'}: cannot read image")
        for line in lines
    ), result.stderr
    assert any(line.startswith("missing: volume-covid19-A-0002: ") for line in lines)
    assert "dice" in result.stdout and "unseen" in result.stdout


def test_cli_exit_codes_for_success_and_unusable_folders(tmp_path):
    pred, truth = _dataset(tmp_path)
    write_mask(_truth_mask(), _reference(), pred / "volume-covid19-A-0002.nii.gz")
    out = tmp_path / "m.csv"
    ok = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(pred),
            str(truth),
            "-o",
            str(out),
            "--workers",
            "1",
            "--seen-sources",
            "A,B",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert set(pd.read_csv(out)["subset"]) == {"seen"}
    assert (tmp_path / "m_summary.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, ["evaluate", str(empty), str(truth), "-o", str(out)])
    assert bad.exit_code == 2
    assert (
        bad.stderr.strip()
        == f"error: {empty}: no prediction files (.nii.gz, .nii, .nrrd, .mha, .png)"
    )
    assert "Example:" in CliRunner().invoke(app, ["evaluate", "--help"]).output


def test_prediction_written_by_simpleitk_matches_a_nibabel_truth(tmp_path):
    """Tools built on ITK write NIfTI through SimpleITK; its geometry must pass the check."""
    ref = Volume.from_geometry(
        np.zeros(SHAPE, np.int16), SPACING, ORIGIN, np.diag([-1.0, -1.0, 1.0])
    )
    truth = write_mask(_truth_mask(), ref, tmp_path / "truth.nii.gz")
    image = sitk.ReadImage(str(truth))
    sitk.WriteImage(image, str(tmp_path / "pred.nii.gz"))
    row = score_case_files("c", tmp_path / "pred.nii.gz", truth, "A")
    assert row["status"] == "ok" and row["dice"] == 1.0, row["error"]


def test_cli_and_demo_share_the_evaluation_writer():
    """metrics.csv and its summary have one writer, so the demo's cannot drift from the CLI's."""
    import ast
    import inspect

    from covseg.cli import evaluate as cli_evaluate
    from covseg.demo import stages

    for module in (cli_evaluate, stages):
        imported = {
            (node.module, alias.name)
            for node in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert ("covseg.metrics.batch", "write_evaluation") in imported, module.__name__
        assert not any(
            isinstance(n, ast.Attribute) and n.attr == "to_csv"
            for n in ast.walk(ast.parse(inspect.getsource(module.evaluate)))
        ), module.__name__
