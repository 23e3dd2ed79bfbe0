"""Dataset fingerprint: what the COVID-19-20 paper's Figure 3 shows, for any dataset.

Per case: spacing (mm) along the array axes x, y, z (i, j, k; for axial CTs x and y are
in-plane and z is the slice axis), voxel volume (mm^3), image size (voxels) and lesion volume
(mL). Per source and overall: medians of spacing and shape, lesion volume statistics, a
normalised HU histogram from -1024 to +1000 HU (4 HU bins, each case weighted by its voxel
count, voxels outside the range left out), and the foreground (lesion) intensity statistics that
a self-configuring training preset normalises with (mean, std, percentiles 0.5 and 99.5, with
nnU-Net's names). Cases are read one at a time and reduced to running sums and histograms, so any
dataset size fits in memory.

Images whose values are not in HU (no value below -200, e.g. 8-bit slices) count in the geometry
statistics but not in the HU histograms or intensity statistics.

2D slices have no volume and no slice spacing: their lesions are measured as areas, in pixels
(``lesion_px``) and, where the slice has a pixel spacing (not PNG/JPG), in mm^2 (``lesion_mm2``,
``pixel_area_mm2``); their ``spacing_z_mm``, ``voxel_volume_mm3`` and ``lesion_ml`` stay empty, as
do the in-plane spacings of PNG/JPG slices. The table has those area columns only when it holds a
2D case. A case's subset is seen, unseen or unknown (no source).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from covseg.datasets import Case

#: Range (HU) and bin width of the normalised histograms.
HIST_RANGE = (-1024.0, 1000.0)
HIST_BIN_HU = 4.0
#: Foreground intensities are histogrammed at 1 HU over this range (clipped) for percentiles.
FG_RANGE = (-1024, 3072)
#: Per-case columns of the fingerprint table.
COLUMNS = (
    "case",
    "source",
    "subset",
    "spacing_x_mm",
    "spacing_y_mm",
    "spacing_z_mm",
    "voxel_volume_mm3",
    "size_x",
    "size_y",
    "size_z",
    "lesion_ml",
    "in_hu",
    "error",
)
#: Columns of 2D cases, inserted before ``in_hu`` when the table has one.
AREA_COLUMNS = ("pixel_area_mm2", "lesion_px", "lesion_mm2")
#: Lesion size columns, preferred first: what a table's lesion sizes are reported in.
LESION_UNITS = (
    ("lesion_ml", "mL", "volume"),
    ("lesion_mm2", "mm²", "area"),
    ("lesion_px", "px", "area"),
)


def hist_edges() -> npt.NDArray[np.float64]:
    """Bin edges (HU) of the normalised histograms."""
    lo, hi = HIST_RANGE
    return np.arange(lo, hi + HIST_BIN_HU / 2, HIST_BIN_HU)


@dataclass
class _Accumulator:
    """Running sums of one group of cases (a source, or all)."""

    hist: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(len(hist_edges()) - 1))
    fg_hist: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(FG_RANGE[1] - FG_RANGE[0], np.int64)
    )
    fg_sum: float = 0.0
    fg_sq: float = 0.0
    fg_n: int = 0
    fg_min: float = float("inf")
    fg_max: float = float("-inf")

    def add(self, image: npt.NDArray[Any], lesion: npt.NDArray[np.bool_] | None) -> None:
        counts, _ = np.histogram(image, bins=hist_edges())
        total = counts.sum()
        if total:
            self.hist += counts / total  # every case weighs the same, whatever its size
        if lesion is not None and lesion.any():
            values = image[lesion].astype(np.float64)
            self.fg_sum += float(values.sum())
            self.fg_sq += float((values**2).sum())
            self.fg_n += int(values.size)
            self.fg_min = min(self.fg_min, float(values.min()))
            self.fg_max = max(self.fg_max, float(values.max()))
            clipped = np.clip(np.rint(values), FG_RANGE[0], FG_RANGE[1] - 1).astype(np.int64)
            self.fg_hist += np.bincount(clipped - FG_RANGE[0], minlength=len(self.fg_hist))

    def merged(self, other: _Accumulator) -> _Accumulator:
        return _Accumulator(
            self.hist + other.hist,
            self.fg_hist + other.fg_hist,
            self.fg_sum + other.fg_sum,
            self.fg_sq + other.fg_sq,
            self.fg_n + other.fg_n,
            min(self.fg_min, other.fg_min),
            max(self.fg_max, other.fg_max),
        )

    def density(self) -> list[float]:
        """The histogram normalised to unit area (per HU)."""
        total = self.hist.sum()
        return (self.hist / (total * HIST_BIN_HU)).tolist() if total else []

    def foreground(self) -> dict[str, float | int | None]:
        """Lesion voxel intensities (HU): n, mean, std, median, min, max, percentiles 0.5/99.5.

        The names are nnU-Net's; the median and percentiles are exact to 1 HU.
        """
        keys = ("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5")
        if self.fg_n == 0:
            return {"n": 0} | dict.fromkeys(keys)
        mean = self.fg_sum / self.fg_n
        var = max(0.0, self.fg_sq / self.fg_n - mean**2)
        cdf = np.cumsum(self.fg_hist) / self.fg_n

        def pct(q: float) -> float:
            return float(np.searchsorted(cdf, q / 100.0) + FG_RANGE[0])

        return {
            "n": self.fg_n,
            "mean": mean,
            "std": float(np.sqrt(var)),
            "median": pct(50.0),
            "min": self.fg_min,
            "max": self.fg_max,
            "percentile_00_5": pct(0.5),
            "percentile_99_5": pct(99.5),
        }


def case_row(case: Case, seen_sources: Iterable[str] = ("A",)) -> tuple[dict[str, Any], Any]:
    """One case's fingerprint row, and its (image, lesion) arrays for the histograms.

    A label stored in another axis order than its image is reoriented exactly
    (:func:`covseg.io.to_reference_grid`).

    Raises
    ------
    ValueError
        When the image or label cannot be read, or their grids differ.
    """
    from covseg.datasets import subset_of
    from covseg.io import has_spacing, read_volume, to_reference_grid

    assert case.image is not None
    image = read_volume(case.image)
    lesion = None
    if case.label is not None:
        label = to_reference_grid(
            read_volume(case.label), image, path=case.label, reference_name="its image"
        )
        lesion = np.asarray(label.array) != 0
    array = np.asarray(image.array)
    in_hu = bool(array.size and array.min() < -200)
    lesion_voxels = float(lesion.sum()) if lesion is not None else math.nan
    row: dict[str, Any] = {
        "case": case.case_id,
        "source": case.source,
        "subset": subset_of(case.source, seen_sources),
    }
    if array.ndim == 2:
        spacing = image.spacing if has_spacing(case.image) else (math.nan, math.nan)
        pixel_mm2 = spacing[0] * spacing[1]
        row |= {
            "spacing_x_mm": spacing[0],
            "spacing_y_mm": spacing[1],
            "spacing_z_mm": math.nan,
            "voxel_volume_mm3": math.nan,
            "size_x": image.shape[0],
            "size_y": image.shape[1],
            "size_z": 1,
            "lesion_ml": math.nan,
            "pixel_area_mm2": pixel_mm2,
            "lesion_px": lesion_voxels,
            "lesion_mm2": lesion_voxels * pixel_mm2,
        }
    else:
        spacing3 = list(image.spacing) + [1.0] * (3 - len(image.spacing))
        size = list(image.shape) + [1] * (3 - len(image.shape))
        row |= {
            "spacing_x_mm": spacing3[0],
            "spacing_y_mm": spacing3[1],
            "spacing_z_mm": spacing3[2],
            "voxel_volume_mm3": float(np.prod(spacing3)),
            "size_x": size[0],
            "size_y": size[1],
            "size_z": size[2],
            "lesion_ml": lesion_voxels * image.voxel_volume_ml,
        }
    row |= {"in_hu": in_hu, "error": ""}
    return row, (array if in_hu else None, lesion)


def fingerprint(
    cases: list[Case],
    seen_sources: Iterable[str] = ("A",),
    on_case: Callable[[Case, str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The fingerprint table (one row per case) and its JSON summary.

    Parameters
    ----------
    cases
        Cases with images (from :func:`covseg.datasets.find_cases`).
    seen_sources
        Sources of the training data ("seen"); the others are "unseen".
    on_case
        Called after each case with the case and its error ("" when fine), e.g. to advance a
        progress bar or report a problem.
    """
    seen = tuple(seen_sources)
    rows: list[dict[str, Any]] = []
    groups: dict[str, _Accumulator] = {}
    for case in cases:
        try:
            row, (image, lesion) = case_row(case, seen)
        except ValueError as exc:
            row = {"case": case.case_id, "source": case.source, "error": str(exc)}
            image = lesion = None
        if image is not None:
            groups.setdefault(case.source, _Accumulator()).add(image, lesion)
        del image, lesion  # one case in memory at a time
        rows.append(row)
        if on_case is not None:
            on_case(case, str(row["error"]))
    columns: tuple[str, ...] = COLUMNS
    if any("lesion_px" in row for row in rows):
        at = COLUMNS.index("in_hu")
        columns = (*COLUMNS[:at], *AREA_COLUMNS, *COLUMNS[at:])
    table = pd.DataFrame(rows, columns=list(columns))
    return table, summarize(table, groups)


def summarize(table: pd.DataFrame, groups: dict[str, _Accumulator]) -> dict[str, Any]:
    """Per-source and overall statistics of a fingerprint table (the JSON)."""
    ok = table[table["error"] == ""]
    total = _Accumulator()
    for acc in groups.values():
        total = total.merged(acc)
    summary: dict[str, Any] = {
        "cases": int(len(ok)),
        "failed": int(len(table) - len(ok)),
        "axes": "array axes i, j, k (x, y in-plane and z the slice axis for axial CTs)",
        **_group_stats(ok, total),
        "sources": {},
        "hu_histogram": {
            "edges_hu": hist_edges().tolist(),
            "density_per_hu": {"all": total.density()},
        },
    }
    for source in sorted(ok["source"].unique()):
        part = ok[ok["source"] == source]
        acc = groups.get(source, _Accumulator())
        name = source or "unknown"
        summary["sources"][name] = _group_stats(part, acc)
        summary["hu_histogram"]["density_per_hu"][name] = acc.density()
    return summary


def _group_stats(part: pd.DataFrame, acc: _Accumulator) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "n": int(len(part)),
        "subset": sorted(part["subset"].unique().tolist()),
        "median_spacing_mm": _medians(part[["spacing_x_mm", "spacing_y_mm", "spacing_z_mm"]]),
        "median_shape": _medians(part[["size_x", "size_y", "size_z"]], integer=True),
        "voxel_volume_mm3": _stats(part["voxel_volume_mm3"]),
        "lesion_ml": _stats(part["lesion_ml"]),
    }
    for column in AREA_COLUMNS:
        if column in part:
            stats[column] = _stats(part[column])
    stats["lesion_free"] = _lesion_free(part)
    stats["foreground_hu"] = acc.foreground()
    return stats


def _medians(frame: pd.DataFrame, integer: bool = False) -> list[float | int | None] | None:
    """Each column's median (NaN left out; ``None`` where a column has no value), or ``None``
    for no rows."""
    if frame.empty:
        return None
    medians = frame.apply(pd.to_numeric, errors="coerce").median()
    values: list[float | int | None] = [
        None if not math.isfinite(v) else int(round(v)) if integer else float(v)
        for v in medians.to_numpy(dtype=float)
    ]
    return values


def _lesion_free(part: pd.DataFrame) -> int:
    """Labelled cases whose lesion mask is empty (they cannot show on a log scale)."""
    column = lesion_column(part)
    if column is None:
        return 0
    return int((pd.to_numeric(part[column], errors="coerce") == 0).sum())


def lesion_column(table: pd.DataFrame) -> str | None:
    """The column a table's lesion sizes are best reported in (mL, else mm², else px)."""
    for column, _unit, _kind in LESION_UNITS:
        if column in table and pd.to_numeric(table[column], errors="coerce").notna().any():
            return column
    return None


def _stats(values: pd.Series) -> dict[str, float | int | None]:
    """n, mean, median, min and max of the finite values (``None`` when there are none)."""
    values = pd.to_numeric(values, errors="coerce")
    values = values[np.isfinite(values)]
    if values.empty:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(values.median()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def plot(table: pd.DataFrame, summary: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = figure(table, summary)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure(table: pd.DataFrame, summary: dict[str, Any]) -> Any:
    """Figure 3 of the paper: spacing x/y/z, voxel volume and lesion size per source (one dot
    per case, jittered sideways around its source), and the normalised HU histograms per source.

    2D slices show their pixel area and lesion area instead of volumes. The lesion panel has a
    log scale, on which an empty mask cannot be drawn: such cases are counted in a note on it.
    A panel with nothing to draw says why. Returns the matplotlib figure (Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""]
    sources = sorted(ok["source"].unique())
    names = [s or "unknown" for s in sources]
    size_column = "voxel_volume_mm3"
    size_label = "voxel volume [mm³]"
    if not _has_values(ok, size_column) and _has_values(ok, "pixel_area_mm2"):
        size_column, size_label = "pixel_area_mm2", "pixel area [mm²]"
    lesion = lesion_column(ok) or "lesion_ml"
    unit, kind = next((u, k) for c, u, k in LESION_UNITS if c == lesion)
    panels = [
        ("spacing_x_mm", "x spacing [mm]", False),
        ("spacing_y_mm", "y spacing [mm]", False),
        ("spacing_z_mm", "z spacing [mm]", False),
        (size_column, size_label, False),
        (lesion, f"lesion {kind} [{unit}]", True),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    rng = np.random.default_rng(0)
    for ax, (column, label, log) in zip(axes.ravel(), panels, strict=False):
        hidden = []
        for pos, source in enumerate(sources):
            values = pd.to_numeric(ok[ok["source"] == source][column], errors="coerce").dropna()
            if log:
                hidden.append(int((values <= 0).sum()))
                values = values[values > 0]
            jitter = rng.uniform(-0.15, 0.15, len(values))
            ax.scatter(pos + jitter, values, s=10, alpha=0.6, color=f"C{pos}")
        ax.set_xticks(range(len(sources)), names)
        ax.set_xlim(-0.5, len(sources) - 0.5)  # one slot a source, its points around its tick
        ax.set_xlabel("source")
        ax.set_ylabel(label)
        if not _has_values(ok, column):
            _note(ax, _EMPTY_PANEL.get(column, "no labels"))
            ax.set_yticks([])
        elif log:
            ax.set_yscale("log")
            if any(hidden):
                counts = ", ".join(
                    f"{name} {n}" for name, n in zip(names, hidden, strict=True) if n
                )
                _note(ax, f"without lesion (off the log scale): {counts}", bottom=True)
    ax = axes.ravel()[-1]
    centres = hist_edges()[:-1] + HIST_BIN_HU / 2
    for pos, name in enumerate(names):
        density = summary["hu_histogram"]["density_per_hu"].get(name) or []
        if density:
            subset = ",".join(summary["sources"][name]["subset"])
            ax.plot(centres, density, label=f"{name} ({subset})", color=f"C{pos}")
    ax.set_xlabel("HU")
    ax.set_ylabel("normalised frequency [1/HU]")
    if ax.get_legend_handles_labels()[0]:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        _note(ax, "no image in HU")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Dataset fingerprint, {summary['cases']} cases")
    fig.tight_layout()
    return fig


#: Why a panel of :func:`plot` can be empty.
_EMPTY_PANEL = {
    "spacing_x_mm": "no pixel spacing (PNG/JPG slices)",
    "spacing_y_mm": "no pixel spacing (PNG/JPG slices)",
    "spacing_z_mm": "2D slices: no slice spacing",
    "voxel_volume_mm3": "2D slices: no voxel volume",
    "pixel_area_mm2": "no pixel spacing (PNG/JPG slices)",
}


def _has_values(table: pd.DataFrame, column: str) -> bool:
    return column in table and bool(pd.to_numeric(table[column], errors="coerce").notna().any())


def _note(ax: Any, text: str, bottom: bool = False) -> None:
    """A short grey note inside a panel (centred, or at its bottom)."""
    y, va = (0.03, "bottom") if bottom else (0.5, "center")
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va=va, fontsize=9, color="0.35")


def summary_table(summary: dict[str, Any]) -> Any:
    """Per-source medians as a rich table (what ``covseg fingerprint`` prints)."""
    from rich.table import Table

    groups = {**summary["sources"], "all": summary}
    lesion, unit = "lesion_ml", "mL"
    for column, column_unit, _kind in LESION_UNITS:
        if (summary.get(column) or {}).get("n"):
            lesion, unit = column, column_unit
            break
    size, size_header = "voxel_volume_mm3", "voxel mm³"
    if not summary["voxel_volume_mm3"]["n"] and (summary.get("pixel_area_mm2") or {}).get("n"):
        size, size_header = "pixel_area_mm2", "pixel mm²"
    table = Table(title=rf"Dataset fingerprint (medians; lesion {unit}: median \[min..max])")
    for column in ("source", "cases", "spacing x/y/z mm", "shape", size_header, f"lesion {unit}"):
        table.add_column(column)
    for name, g in groups.items():
        stats = g.get(lesion) or {"n": 0}
        digits = 1 if unit == "mL" else 0  # areas: whole pixels, mm² to 1 mm²
        lesion_text = (
            rf"{stats['median']:.{digits}f} \[{stats['min']:.{digits}f}.."
            rf"{stats['max']:.{digits}f}]"
            if stats["n"]
            else "-"
        )
        if g.get("lesion_free"):
            lesion_text += f", {g['lesion_free']} without lesion"
        spacing = g["median_spacing_mm"] or []
        size_stats = g.get(size) or {"n": 0}
        table.add_row(
            name,
            str(g["n"]),
            " / ".join("-" if s is None else f"{s:.2f}" for s in spacing),
            " x ".join("-" if s is None else str(s) for s in g["median_shape"] or []),
            f"{size_stats['median']:.2f}" if size_stats["n"] else "-",
            lesion_text,
        )
    return table


def write_outputs(table: pd.DataFrame, summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``fingerprint.csv``, ``fingerprint.json`` and ``fingerprint.png`` into ``out_dir``;
    the one writer of fingerprint outputs (the CLI, the demo). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "fingerprint.csv", index=False)
    (out_dir / "fingerprint.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(table, summary, out_dir / "fingerprint.png")
    return out_dir
