"""Dataset fingerprint: spacing, sizes, lesion volumes and HU statistics against known values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.datasets import find_cases
from covseg.fingerprint import HIST_BIN_HU, fingerprint
from covseg.io import Volume, write_mask, write_volume

A_SPACING = (0.5, 0.7, 3.0)
B_SPACING = (0.8, 0.8, 1.25)


def _case(folder: Path, name: str, spacing: tuple[float, ...], shape: tuple[int, ...], box: int):
    """A CT of -1000 HU air with a cube of ``box`` ** 3 lesion voxels at values 0..box**3 - 1."""
    ct = np.full(shape, -1000, np.int16)
    lesion = np.zeros(shape, np.uint8)
    lesion[2 : 2 + box, 2 : 2 + box, 1 : 1 + box] = 1
    ct[lesion > 0] = np.arange(box**3) - 100
    vol = Volume(ct, np.diag([*spacing, 1.0]))
    write_volume(vol, folder / f"volume-covid19-{name}_ct.nii.gz")
    write_mask(lesion, vol, folder / f"volume-covid19-{name}_seg.nii.gz")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    _case(folder, "A-0001", A_SPACING, (20, 16, 6), 4)
    _case(folder, "A-0002", A_SPACING, (22, 16, 6), 3)
    _case(folder, "B-0001", B_SPACING, (16, 16, 12), 5)
    return folder


def test_known_geometry_and_volumes(dataset: Path) -> None:
    table, summary = fingerprint(find_cases(dataset))
    row = table.set_index("case").loc["volume-covid19-A-0001"]
    assert (row.spacing_x_mm, row.spacing_y_mm, row.spacing_z_mm) == pytest.approx(A_SPACING)
    assert row.voxel_volume_mm3 == pytest.approx(0.5 * 0.7 * 3.0)
    assert (row.size_x, row.size_y, row.size_z) == (20, 16, 6)
    assert row.lesion_ml == pytest.approx(64 * 0.5 * 0.7 * 3.0 / 1000)
    a, b = summary["sources"]["A"], summary["sources"]["B"]
    assert a["n"] == 2 and a["subset"] == ["seen"] and b["subset"] == ["unseen"]
    assert a["median_spacing_mm"] == pytest.approx(A_SPACING)
    assert a["median_shape"] == [21, 16, 6]
    assert summary["median_spacing_mm"] == pytest.approx(A_SPACING)


def test_foreground_statistics_match_numpy(dataset: Path) -> None:
    _, summary = fingerprint(find_cases(dataset))
    values = np.concatenate([np.arange(n**3) - 100 for n in (4, 3, 5)]).astype(float)
    fg = summary["foreground_hu"]
    assert fg["n"] == values.size
    assert fg["mean"] == pytest.approx(values.mean())
    assert fg["std"] == pytest.approx(values.std())
    assert (fg["min"], fg["max"]) == (values.min(), values.max())
    assert fg["percentile_00_5"] == pytest.approx(np.percentile(values, 0.5), abs=1.0)
    assert fg["percentile_99_5"] == pytest.approx(np.percentile(values, 99.5), abs=1.0)


def test_histograms_are_normalised(dataset: Path) -> None:
    _, summary = fingerprint(find_cases(dataset))
    hist = summary["hu_histogram"]
    edges = np.asarray(hist["edges_hu"])
    assert edges[0] == -1024 and edges[-1] == 1000
    for density in hist["density_per_hu"].values():
        assert np.sum(density) * HIST_BIN_HU == pytest.approx(1.0)
    # Mostly air: the bin holding -1000 HU has most of the mass.
    air_bin = np.searchsorted(edges, -1000, side="right") - 1
    assert hist["density_per_hu"]["B"][air_bin] * HIST_BIN_HU > 0.8


def test_command_writes_table_json_and_plot(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "fp"
    result = CliRunner().invoke(app, ["fingerprint", str(dataset), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out / "fingerprint.csv")) == 3
    summary = json.loads((out / "fingerprint.json").read_text())
    assert set(summary["sources"]) == {"A", "B"}
    assert {"median_spacing_mm", "median_shape", "foreground_hu"} <= set(summary)
    assert (out / "fingerprint.png").stat().st_size > 10_000


def test_command_reports_a_bad_case_and_goes_on(dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for path in dataset.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "volume-covid19-A-0002_ct.nii.gz").write_bytes(b"not a nifti")
    result = CliRunner().invoke(app, ["fingerprint", str(data), "-o", str(tmp_path / "fp")])
    assert result.exit_code == 1
    assert "volume-covid19-A-0002_ct.nii.gz" in result.output and "Traceback" not in result.output
    table = pd.read_csv(tmp_path / "fp" / "fingerprint.csv", keep_default_na=False)
    assert (table["error"] == "").sum() == 2
