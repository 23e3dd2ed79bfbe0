"""The demo report's figures, as the COVID-19-20 paper shows its results.

- :func:`blob_plot` and :func:`podium`: challengeR's bootstrap blob plot across the six tasks
  and the podium of one task, drawn by :mod:`covseg.ranking.plots` from a ranking result;
- :func:`subset_boxplots`: every algorithm's Dice, NSD and NAVE per case, seen and unseen
  cases apart (the paper's per-team boxplots);
- :func:`example_case`: one test case with every algorithm's lesion outline over the truth on an
  axial and a coronal view (the paper's Figures 6-7).

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot state);
:func:`save` writes it as a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from covseg.io import Volume
from covseg.ranking import RankingResult

#: The ranking method whose results the figures show: the challenge's significance ranking.
METHOD = "test-then-rank"
#: Metrics of the boxplots: column of metrics.csv -> axis label.
BOX_METRICS = {"dice": "Dice", "nsd": "NSD @ 1 mm", "nave": "NAVE (smaller is better)"}
#: Lung window (HU) of the example case's CT.
WINDOW = (-1350.0, 150.0)


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (110 dpi) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _order(result: RankingResult, task: str) -> npt.NDArray[np.intp]:
    """Algorithm indices of ``task`` best first under :data:`METHOD` (ties by name)."""
    found = next(t for t in result.tasks if t.name == task)
    rows = result.rankings[(result.rankings.method == METHOD) & (result.rankings.task == task)]
    rank = rows.set_index("algorithm").loc[list(found.algorithms), "rank"].to_numpy(dtype=float)
    return np.lexsort((np.arange(len(rank)), rank))


def blob_plot(result: RankingResult) -> Figure:
    """Bootstrap ranks of every algorithm in every task, algorithms in consensus order."""
    from covseg.ranking.plots import blob_across_tasks

    return blob_across_tasks(result, METHOD)


def podium(result: RankingResult, task: str) -> Figure:
    """challengeR's podium of ``task``: each case's value at the place the algorithm took."""
    from covseg.ranking.plots import podium as draw

    found = next(t for t in result.tasks if t.name == task)
    return draw(found, _order(result, task))


def subset_boxplots(evaluations: Mapping[str, pd.DataFrame], order: Sequence[str]) -> Figure:
    """Per-case Dice, NSD and NAVE of each algorithm (boxes and dots), seen and unseen apart.

    Parameters
    ----------
    evaluations
        Algorithm -> its ``metrics.csv`` (columns ``subset`` and the metrics).
    order
        Algorithms from left to right (the final ranking's order).
    """
    subsets = [
        s for s in ("seen", "unseen") if any((e.subset == s).any() for e in evaluations.values())
    ]
    fig = Figure(figsize=(4.2 * len(BOX_METRICS), 3.4 * len(subsets) + 1.2))
    axes = np.atleast_2d(fig.subplots(len(subsets), len(BOX_METRICS), sharex=True, squeeze=False))
    jitter = np.random.default_rng(0)
    colors = _colors(len(order))
    for row, subset in enumerate(subsets):
        for col, (metric, label) in enumerate(BOX_METRICS.items()):
            ax = axes[row, col]
            data = []
            for name in order:
                frame = evaluations[name]
                column = pd.to_numeric(frame.loc[frame.subset == subset, metric], errors="coerce")
                data.append(column.dropna().to_numpy(dtype=float))
            positions = np.arange(len(order))
            ax.boxplot(data, positions=positions, widths=0.6, showfliers=False)
            for x, values, color in zip(positions, data, colors, strict=True):
                xs = x + jitter.uniform(-0.18, 0.18, values.size)
                ax.scatter(xs, values, s=10, color=color, alpha=0.8, linewidths=0)
            ax.set_title(f"{label}, {subset} cases (n={max(len(d) for d in data)})", fontsize=9)
            ax.set_xticks(positions)
            ax.set_xticklabels(order, rotation=60, ha="right", fontsize=8)
            ax.grid(axis="y", color="0.9")
    fig.suptitle("Every algorithm on every test case (left to right: final ranking)")
    fig.tight_layout()
    return fig


def _colors(n: int) -> list[str]:
    """Matplotlib's ten qualitative colours, repeated past ten."""
    return [f"C{k % 10}" for k in range(n)]


def example_case(
    ct: Volume,
    truth: npt.ArrayLike,
    masks: Mapping[str, npt.ArrayLike],
    title: str = "",
) -> Figure:
    """Every algorithm's lesion outline and the truth's on an axial and a coronal slice.

    The slices go through the truth's largest lesion area (the axial slice with the most lesion
    voxels, then the coronal row with the most lesion voxels in the lesion's extent), in the
    radiological convention (patient's right on the image's left, anterior and superior up) with
    the pixel aspect ratio from the spacing; the CT in a lung window (W 1500, L -600 HU).

    Parameters
    ----------
    ct
        The test case's CT.
    truth
        Its reference lesion mask (same grid).
    masks
        Algorithm -> its lesion mask (same grid), in legend order.
    """
    from nibabel.orientations import apply_orientation, io_orientation

    ornt = io_orientation(ct.affine)
    image = apply_orientation(np.asarray(ct.array, dtype=float), ornt)
    ref = apply_orientation(np.asarray(truth) != 0, ornt)
    preds = {n: apply_orientation(np.asarray(m) != 0, ornt) for n, m in masks.items()}
    spacing = [ct.spacing[int(a)] for a in ornt[:, 0].argsort()]
    k = int(np.argmax(ref.sum(axis=(0, 1)))) if ref.any() else image.shape[2] // 2
    j = int(np.argmax(ref.sum(axis=(0, 2)))) if ref.any() else image.shape[1] // 2
    # RAS+ array (x right, y anterior, z superior) -> rows top-down, patient's right on the left.
    views = [
        ("axial", lambda a: a[:, :, k].T[::-1, ::-1], spacing[1] / spacing[0]),
        ("coronal", lambda a: a[:, j, :].T[::-1, ::-1], spacing[2] / spacing[0]),
    ]
    colors = _colors(len(preds))
    fig = Figure(figsize=(11, 6.2), facecolor="black")
    axes = fig.subplots(1, 2)
    for ax, (name, cut, aspect) in zip(axes, views, strict=True):
        ax.imshow(cut(image), cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect)
        for mask, color in zip(preds.values(), colors, strict=True):
            if cut(mask).any():
                ax.contour(cut(mask), levels=[0.5], colors=[color], linewidths=0.9)
        if cut(ref).any():
            ax.contour(cut(ref), levels=[0.5], colors="white", linewidths=1.6, linestyles="--")
        ax.set_title(name, color="white")
        ax.text(0.01, 0.5, "R", color="yellow", transform=ax.transAxes, va="center")
        ax.text(0.97, 0.5, "L", color="yellow", transform=ax.transAxes, va="center")
        ax.axis("off")
    handles = [Line2D([], [], color="white", ls="--", lw=1.6, label="reference (truth)")]
    handles += [
        Line2D([], [], color=c, lw=1.2, label=n) for n, c in zip(preds, colors, strict=True)
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False, labelcolor="white"
    )
    fig.suptitle(title, color="white")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    return fig
