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
"""

from __future__ import annotations

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

    Raises
    ------
    ValueError
        When the image or label cannot be read, or their geometries differ.
    """
    from covseg.datasets import subset_of
    from covseg.io import read_volume, to_reference_grid

    assert case.image is not None
    image = read_volume(case.image)
    spacing = list(image.spacing) + [1.0] * (3 - len(image.spacing))
    size = list(image.shape) + [1] * (3 - len(image.shape))
    lesion = None
    lesion_ml = float("nan")
    if case.label is not None:
        label = to_reference_grid(
            read_volume(case.label), image, path=case.label, reference_name="its image"
        )
        lesion = np.asarray(label.array) != 0
        lesion_ml = float(lesion.sum()) * image.voxel_volume_ml
    array = np.asarray(image.array)
    in_hu = bool(array.size and array.min() < -200)
    row = {
        "case": case.case_id,
        "source": case.source,
        "subset": subset_of(case.source, seen_sources),
        "spacing_x_mm": spacing[0],
        "spacing_y_mm": spacing[1],
        "spacing_z_mm": spacing[2],
        "voxel_volume_mm3": float(np.prod(spacing)),
        "size_x": size[0],
        "size_y": size[1],
        "size_z": size[2],
        "lesion_ml": lesion_ml,
        "in_hu": in_hu,
        "error": "",
    }
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
    table = pd.DataFrame(rows, columns=list(COLUMNS))
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
    spacing = part[["spacing_x_mm", "spacing_y_mm", "spacing_z_mm"]].astype(float)
    shape = part[["size_x", "size_y", "size_z"]].astype(float)
    lesion = pd.to_numeric(part["lesion_ml"], errors="coerce").dropna()
    return {
        "n": int(len(part)),
        "subset": sorted(part["subset"].unique().tolist()),
        "median_spacing_mm": spacing.median().tolist() if len(part) else None,
        "median_shape": [int(v) for v in shape.median().round()] if len(part) else None,
        "voxel_volume_mm3": _stats(part["voxel_volume_mm3"].astype(float)),
        "lesion_ml": _stats(lesion),
        "foreground_hu": acc.foreground(),
    }


def _stats(values: pd.Series) -> dict[str, float | int | None]:
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
    """Figure 3 of the paper: spacing x/y/z, voxel volume and lesion volume per source (one dot
    per case), and the normalised HU histograms per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""]
    sources = sorted(ok["source"].unique())
    names = [s or "unknown" for s in sources]
    panels = [
        ("spacing_x_mm", "x spacing [mm]", False),
        ("spacing_y_mm", "y spacing [mm]", False),
        ("spacing_z_mm", "z spacing [mm]", False),
        ("voxel_volume_mm3", "voxel volume [mm³]", False),
        ("lesion_ml", "lesion volume [mL]", True),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    rng = np.random.default_rng(0)
    for ax, (column, label, log) in zip(axes.ravel(), panels, strict=False):
        for pos, source in enumerate(sources):
            values = pd.to_numeric(ok[ok["source"] == source][column], errors="coerce").dropna()
            if log:
                values = values[values > 0]
            jitter = rng.uniform(-0.15, 0.15, len(values))
            ax.scatter(pos + jitter, values, s=10, alpha=0.6)
        ax.set_xticks(range(len(sources)), names)
        ax.set_xlabel("source")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
    ax = axes.ravel()[-1]
    centres = hist_edges()[:-1] + HIST_BIN_HU / 2
    for name in names:
        density = summary["hu_histogram"]["density_per_hu"].get(name) or []
        if density:
            subset = ",".join(summary["sources"][name]["subset"])
            ax.plot(centres, density, label=f"{name} ({subset})")
    ax.set_xlabel("HU")
    ax.set_ylabel("normalised frequency [1/HU]")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.suptitle(f"Dataset fingerprint, {summary['cases']} cases")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
