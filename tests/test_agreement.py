"""Inter-observer agreement: hand-computed metrics and Bland-Altman statistics, the command."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covseg.agreement import bland_altman, compare_case, summarize, summary_line
from covseg.cli import app
from covseg.io import Volume, write_mask

AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])


def _box(x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((30, 20, 10), np.uint8)
    mask[x0:x1, 5:15, 2:8] = 1
    return mask


def _write(folder: Path, name: str, mask: np.ndarray) -> Path:
    return write_mask(mask, Volume(mask, AFFINE), folder / f"{name}.nii.gz")


def test_compare_case_hand_computed(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", "c", _box(5, 15))  # 10 x 10 x 6 voxels
    b = _write(tmp_path / "b", "c", _box(5, 20))  # 15 x 10 x 6 voxels
    row = compare_case(a, b)
    voxel_ml = 0.5 * 0.5 * 2.0 / 1000
    assert row["volume_a_ml"] == pytest.approx(600 * voxel_ml)
    assert row["volume_b_ml"] == pytest.approx(900 * voxel_ml)
    assert row["difference_ml"] == pytest.approx(300 * voxel_ml)
    assert row["dice"] == pytest.approx(2 * 600 / 1500)
    assert row["nave"] == pytest.approx(0.5)  # |900 - 600| / 600, A the reference
    assert 0 < row["nsd"] < 1
    same = compare_case(a, a)
    assert (same["dice"], same["nsd"], same["nave"]) == (1.0, 1.0, 0.0)


def test_bland_altman_and_summary_line() -> None:
    stats = bland_altman([10.0, 20.0, 30.0, 40.0], [11.0, 23.0, 29.0, 44.0])
    diff = np.array([1.0, 3.0, -1.0, 4.0])
    assert stats["bias_ml"] == pytest.approx(diff.mean())
    assert stats["sd_ml"] == pytest.approx(diff.std(ddof=1))
    assert stats["lower_loa_ml"] == pytest.approx(diff.mean() - 1.96 * diff.std(ddof=1))
    assert stats["upper_loa_ml"] == pytest.approx(diff.mean() + 1.96 * diff.std(ddof=1))
    low, high = stats["bias_ci95_ml"]
    assert low < stats["bias_ml"] < high
    assert summary_line([0.702, 0.5, 0.9]) == "0.701 ± 0.200 (0.702)"
    assert bland_altman([], [])["n"] == 0


def test_summarize_leaves_out_failed_cases() -> None:
    table = pd.DataFrame(
        {
            "dice": [0.5, 0.7, np.nan],
            "nsd": [0.4, 0.6, np.nan],
            "nave": [0.1, 0.3, np.nan],
            "volume_a_ml": [1.0, 2.0, np.nan],
            "volume_b_ml": [1.5, 2.5, np.nan],
            "error": ["", "", "bad file"],
        }
    )
    summary = summarize(table)
    assert summary["cases"] == 2 and summary["failed"] == 1
    assert summary["dice"]["mean"] == pytest.approx(0.6)
    assert summary["bland_altman"]["bias_ml"] == pytest.approx(0.5)


def test_command(tmp_path: Path) -> None:
    a, b = tmp_path / "reader1", tmp_path / "reader2"
    for i, (x1_a, x1_b) in enumerate([(15, 16), (12, 14), (20, 18)]):
        _write(a, f"case{i}", _box(5, x1_a))
        _write(b, f"case{i}", _box(5, x1_b))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["agreement", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "agreement.csv")
    assert list(table["case"]) == ["case0", "case1", "case2"]
    summary = json.loads((out / "agreement.json").read_text())
    voxel_ml = 0.5 * 0.5 * 2.0 / 1000
    assert summary["bland_altman"]["bias_ml"] == pytest.approx((60 + 120 - 120) / 3 * voxel_ml)
    assert "±" in summary["dice"]["text"]
    assert (out / "bland_altman.png").stat().st_size > 10_000

    _write(b, "extra", _box(5, 10))
    other = np.zeros((30, 20, 11), np.uint8)
    write_mask(other, Volume(other, AFFINE), b / "case1.nii.gz")
    again = CliRunner().invoke(app, ["agreement", str(a), str(b), "-o", str(out)])
    assert again.exit_code == 1
    assert "extra" in again.output and "case1.nii.gz" in again.output
    assert "Traceback" not in again.output


def test_set_b_stored_in_another_axis_order_is_reoriented(tmp_path: Path) -> None:
    """Set B's mask written with i reversed (another tool's habit): the same voxels, so the
    same numbers as the mask stored like set A's."""
    a = _write(tmp_path / "a", "c", _box(5, 15))
    b = _write(tmp_path / "b", "c", _box(5, 20))
    reverse = np.eye(4)
    reverse[0, 0], reverse[0, 3] = -1.0, 29  # stored i is A's 29 - i
    flipped = _box(5, 20)[::-1].copy()
    c = write_mask(flipped, Volume(flipped, AFFINE @ reverse), tmp_path / "flipped" / "c.nii.gz")
    assert compare_case(a, c) == compare_case(a, b)


def test_set_b_on_another_grid_is_named_against_set_a(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", "c", _box(5, 15))
    shifted = write_mask(
        _box(5, 15),
        Volume(_box(5, 15), AFFINE + np.diag([0.0, 0.0, 0.5, 0.0])),
        tmp_path / "b.nii.gz",
    )
    with pytest.raises(
        ValueError, match=r"b\.nii\.gz: spacing 2\.5 mm along axis 2 \(S\), set A has 2 mm"
    ):
        compare_case(a, shifted)


def test_command_with_nothing_to_compare_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    a, b, out = tmp_path / "reader1", tmp_path / "reader2", tmp_path / "out"
    _write(a, "case0", _box(5, 15))
    _write(b, "case9", _box(5, 15))
    result = CliRunner().invoke(app, ["agreement", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 2
    assert f"no case id in common between set A ({a}, 1 cases) and set B ({b}, 1 cases)" in (
        " ".join(result.output.split())
    )
    assert not out.exists() and "truth" not in result.output

    # A pair that cannot be compared (other slice count): still nothing to show.
    other = np.zeros((30, 20, 11), np.uint8)
    write_mask(other, Volume(other, AFFINE), b / "case0.nii.gz")
    result = CliRunner().invoke(app, ["agreement", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "set A has 10" in result.output and "none of the 1 cases in both sets" in result.output
    assert not out.exists()

    absent = CliRunner().invoke(app, ["agreement", str(a), str(tmp_path / "none"), "-o", str(out)])
    assert absent.exit_code == 2 and "set B: " in absent.output


def test_command_on_one_case_draws_without_warnings(tmp_path: Path) -> None:
    """One case has no sd: no limits of agreement, and no empty legend warning either."""
    a, b, out = tmp_path / "reader1", tmp_path / "reader2", tmp_path / "out"
    _write(a, "case0", _box(5, 15))
    _write(b, "case0", _box(5, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CliRunner().invoke(app, ["agreement", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert (out / "bland_altman.png").is_file()


def test_command_on_a_totalsegmentator_mask_and_its_copy_on_the_dicom_grid(
    shared_data: Path, tmp_path: Path
) -> None:
    """Set A: TotalSegmentator's labels of the DICOM series as written (LAS); set B: the same
    labels stored on the series' own LPS grid. The liver (label 5, 366,708 voxels of
    0.9765625 x 0.9765625 x 2 mm = 699.44 mL) agrees perfectly."""
    from covseg.io import read_volume, to_reference_grid

    ct = read_volume(shared_data / "totalseg" / "example_ct_dicom")
    seg_path = shared_data / "totalseg" / "example_seg_dicom.nii.gz"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "example.nii.gz").symlink_to(seg_path)
    write_mask(
        to_reference_grid(read_volume(seg_path), ct).array, ct, tmp_path / "b" / "example.nii.gz"
    )
    out = tmp_path / "out"
    args = ["agreement", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--label", "5"])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out / "agreement.csv").iloc[0]
    assert (row["dice"], row["nsd"], row["nave"]) == (1.0, 1.0, 0.0)
    assert (
        row["volume_a_ml"] == row["volume_b_ml"] == pytest.approx(366708 * 0.9765625**2 * 2 / 1000)
    )
    # Without --label the 32 labels are refused, and nothing is left to compare.
    shutil.rmtree(out)
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "pick one with --label N" in refused.output
    assert not out.exists()
