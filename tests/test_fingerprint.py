"""Dataset fingerprint: spacing, sizes, lesion volumes and HU statistics against known values."""

from __future__ import annotations

import ast
import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.datasets import Case, find_cases, source_from_case_id
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


def test_cases_without_a_source_are_unknown(dataset: Path, tmp_path: Path) -> None:
    vol = Volume(np.full((16, 16, 4), -1000, np.int16), np.eye(4))
    image = write_volume(vol, tmp_path / "patient7.nii.gz")
    cases = [*find_cases(dataset), Case("patient7", image, None, source_from_case_id("patient7"))]
    table, summary = fingerprint(cases)
    assert table.set_index("case")["subset"].to_dict() == {
        "volume-covid19-A-0001": "seen",
        "volume-covid19-A-0002": "seen",
        "volume-covid19-B-0001": "unseen",
        "patient7": "unknown",
    }
    assert summary["sources"]["unknown"]["subset"] == ["unknown"]


def _slices(folder: Path) -> None:
    """MedSeg-like 2D slices: a 40 x 30 image with a 6 x 5 lesion, one with none, as PNG."""
    for name, box in (("1", (slice(4, 10), slice(3, 8))), ("2", None)):
        image = np.full((40, 30), 90, np.uint8)
        lesion = np.zeros((40, 30), np.uint8)
        if box is not None:
            lesion[box] = 255
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "lesion").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / "images" / f"{name}.png")
        Image.fromarray(lesion).save(folder / "lesion" / f"{name}.png")


def test_2d_slices_have_areas_in_pixels_not_volumes(tmp_path: Path) -> None:
    """A PNG has no spacing: no mm, no mL from an assumed 1 mm; the lesion is 6 x 5 = 30 px."""
    _slices(tmp_path)
    table, summary = fingerprint(find_cases(tmp_path))
    row = table.set_index("case").loc["1"]
    assert row.lesion_px == 30 and table.set_index("case").loc["2"].lesion_px == 0
    for column in ("spacing_x_mm", "spacing_z_mm", "voxel_volume_mm3", "lesion_ml", "lesion_mm2"):
        assert np.isnan(row[column]), column
    assert (row.size_x, row.size_y, row.size_z) == (40, 30, 1)
    assert summary["lesion_px"]["median"] == 15.0 and summary["lesion_ml"]["n"] == 0
    assert summary["median_spacing_mm"] == [None, None, None]
    assert summary["lesion_free"] == 1
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN


def test_2d_slices_with_a_spacing_have_areas_in_mm2(tmp_path: Path) -> None:
    """2D NRRD slices keep their pixel spacing, 0.5 x 0.8 mm: 30 px are 12 mm²."""
    lesion = np.zeros((40, 30), np.uint8)
    lesion[4:10, 3:8] = 1
    image = Volume(np.full((40, 30), -1000, np.int16), np.diag([0.5, 0.8, 1.0, 1.0]))
    write_volume(image, tmp_path / "s_ct.nrrd")
    write_mask(lesion, image, tmp_path / "s_seg.nrrd")
    (tmp_path / "cases.csv").write_text("case,image,label\ns,s_ct.nrrd,s_seg.nrrd\n")
    table, summary = fingerprint(find_cases(tmp_path))
    row = table.iloc[0]
    assert (row.spacing_x_mm, row.spacing_y_mm) == (0.5, 0.8) and np.isnan(row.spacing_z_mm)
    assert row.pixel_area_mm2 == pytest.approx(0.4)
    assert row.lesion_px == 30 and row.lesion_mm2 == pytest.approx(12.0)
    assert np.isnan(row.lesion_ml) and summary["lesion_mm2"]["max"] == pytest.approx(12.0)


def _figure_of(cases: list[Case]) -> Any:
    from covseg.fingerprint import figure

    table, summary = fingerprint(cases)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found" included
        return figure(table, summary)


def test_figure_counts_lesion_free_cases_and_keeps_points_on_their_source(
    dataset: Path, tmp_path: Path
) -> None:
    """Three cases of A (one without lesion), two of B: the log-scale lesion panel says that one
    case of A is not drawn, and each source's points lie within 0.15 of its tick."""
    import matplotlib.pyplot as plt

    _case(tmp_path, "A-0003", A_SPACING, (20, 16, 6), 0)
    _case(tmp_path, "B-0002", B_SPACING, (16, 16, 12), 2)
    fig = _figure_of([*find_cases(dataset), *find_cases(tmp_path)])
    lesion = fig.axes[4]
    assert lesion.get_yscale() == "log"
    notes = [t.get_text() for t in lesion.texts]
    assert notes == ["without lesion (off the log scale): A 1"]
    ticks = [t.get_text() for t in lesion.get_xticklabels()]
    assert ticks == ["A", "B"] and lesion.get_xlim() == (-0.5, 1.5)
    for axis in fig.axes[:5]:
        for pos, points in enumerate(axis.collections):
            x = points.get_offsets()[:, 0]
            assert np.all(np.abs(x - pos) <= 0.15), (axis.get_ylabel(), pos, x)
    assert [len(c.get_offsets()) for c in lesion.collections] == [2, 2]
    plt.close(fig)


def test_figure_of_2d_slices_draws_without_warnings(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    _slices(tmp_path)
    fig = _figure_of(find_cases(tmp_path))
    assert fig.axes[4].get_ylabel() == "lesion area [px]"
    assert [t.get_text() for t in fig.axes[5].texts] == ["no image in HU"]
    assert [t.get_text() for t in fig.axes[0].texts] == ["no pixel spacing (PNG/JPG slices)"]
    plt.close(fig)


def test_command_on_2d_slices_prints_no_library_warning(tmp_path: Path) -> None:
    _slices(tmp_path / "data")
    out = tmp_path / "fp"
    result = CliRunner().invoke(app, ["fingerprint", str(tmp_path / "data"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output.lower() and "lesion px" in result.output
    assert "lesion_px" in pd.read_csv(out / "fingerprint.csv").columns


def test_cli_and_demo_share_the_fingerprint_writer() -> None:
    """The demo writes its fingerprint through covseg.fingerprint, not the CLI (layering)."""
    from covseg.demo import stages

    tree = ast.parse(inspect.getsource(stages))
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("covseg.fingerprint", "write_outputs") in imported
    assert not any(module and module.startswith("covseg.cli") for module, _ in imported)
