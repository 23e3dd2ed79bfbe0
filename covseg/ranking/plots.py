"""Ranking plots (matplotlib, PNG and SVG), sized to stay readable with 100 algorithms.

Per task: dots-and-boxplot, podium, ranking heatmap, significance map, bootstrap blob plot.
Across tasks: blob plot and a violin of Kendall's tau per task. Algorithms are ordered by their
rank under the first ranking method; figure width grows with the number of algorithms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from numpy.typing import NDArray

from covseg.ranking import stats
from covseg.ranking.run import RankingResult
from covseg.ranking.table import Task


@dataclass(frozen=True)
class Plot:
    """A written plot: title for the report, PNG path (an SVG lies beside it)."""

    title: str
    png: Path


def _width(n: float) -> float:
    return max(6.0, 1.5 + 0.16 * n)


def _label_size(n: int) -> float:
    return 9.0 if n <= 30 else 6.0


def _colors(n: int) -> NDArray[np.float64]:
    cmap = colormaps["tab10" if n <= 10 else "turbo"]
    return np.asarray(cmap(np.linspace(0.05, 0.95, n) if n > 10 else np.arange(n)))


def _literal(name: str) -> str:
    """``name`` as matplotlib prints it verbatim: ``$`` escaped, so no mathtext is parsed (a
    name like ``T $\\bad$`` would otherwise stop the plot). Unescaping restores it exactly."""
    return name.replace("$", r"\$")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save(fig: Figure, out_dir: Path, name: str, title: str) -> Plot:
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(out_dir / f"{name}.svg", bbox_inches="tight")
    return Plot(title, png)


def _order(result: RankingResult, task: Task, method: str) -> NDArray[np.intp]:
    """Algorithm indices of ``task`` sorted by rank (then name) under ``method``."""
    ranks = result.rankings[
        (result.rankings.method == method) & (result.rankings.task == task.name)
    ]
    rank = ranks.set_index("algorithm").loc[list(task.algorithms), "rank"].to_numpy()
    return np.lexsort((np.arange(len(rank)), rank))


def _algorithm_axis(ax: Axes, names: Sequence[str]) -> None:
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(map(_literal, names), rotation=90, fontsize=_label_size(len(names)))
    ax.set_xlim(-0.7, len(names) - 0.3)


def boxplot(task: Task, order: NDArray[np.intp]) -> Figure:
    """Every case's value as a dot over a boxplot, one column per algorithm."""
    values = task.sign * task.values[order]
    names = [task.algorithms[i] for i in order]
    fig = Figure(figsize=(_width(len(names)), 4.5))
    ax = fig.add_subplot()
    data = [v[~np.isnan(v)] for v in values]
    ax.boxplot(data, positions=np.arange(len(names)), widths=0.6, showfliers=False)
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, values.shape)
    x = np.arange(len(names))[:, None] + jitter
    ax.scatter(x.ravel(), values.ravel(), s=6, alpha=0.5, color="tab:blue", linewidths=0)
    _algorithm_axis(ax, names)
    ax.set_ylabel("value" + (" (smaller is better)" if task.sign < 0 else ""))
    ax.set_title(f"{task.name}: values per case")
    return fig


def podium(task: Task, order: NDArray[np.intp]) -> Figure:
    """Podium: each algorithm's value on each case placed at its rank on that case, coloured by
    algorithm; below (up to 20 algorithms; the ranking heatmap shows it for more), how often
    each algorithm took each place."""
    n = len(order)
    case_ranks = stats.rank_min(task.values.T).T[order]  # [algorithm in order, case]
    values = task.sign * task.values[order]
    colors = _colors(n)
    with_bars = n <= 20
    fig = Figure(figsize=(_width(n), 6.0 if with_bars else 4.5))
    if with_bars:
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        top = fig.add_subplot()
    offsets = np.linspace(-0.35, 0.35, n) if n > 1 else np.zeros(1)
    ok = ~np.isnan(case_ranks)
    x = (case_ranks - 1 + offsets[:, None])[ok]
    point_colors = np.repeat(colors[:, None, :], case_ranks.shape[1], axis=1)[ok]
    top.scatter(x, values[ok], s=8, c=point_colors, linewidths=0)
    for place in range(n):
        top.axvline(place - 0.5, color="0.85", lw=0.5)
    top.set_ylabel("value on the case")
    top.set_title(f"{task.name}: podium (place on each case; colours: algorithms by rank)")
    axis = top
    if with_bars:
        for k in range(n):
            freq = np.bincount(case_ranks[k][ok[k]].astype(int) - 1, minlength=n)
            bottom.bar(np.arange(n) + offsets[k], freq, width=0.7 / n, color=colors[k])
            top.scatter([], [], color=colors[k], label=_literal(task.algorithms[order[k]]))
        top.legend(fontsize=7, loc="upper right")
        bottom.set_ylabel("cases")
        axis = bottom
    axis.set_xticks(np.arange(n))
    axis.set_xticklabels([str(p + 1) for p in range(n)], fontsize=_label_size(n))
    axis.set_xlabel("place on the case")
    return fig


def ranking_heatmap(task: Task, order: NDArray[np.intp]) -> Figure:
    """How many cases each algorithm (columns, in ranking order) placed at each rank (rows)."""
    n = len(order)
    case_ranks = stats.rank_min(task.values.T).T[order]
    counts = np.zeros((n, n))
    for k in range(n):
        r = case_ranks[k][~np.isnan(case_ranks[k])].astype(int) - 1
        counts[:, k] = np.bincount(r, minlength=n)
    size = _width(n)
    fig = Figure(figsize=(size, size * 0.8))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="viridis", origin="upper", aspect="auto")
    fig.colorbar(image, ax=ax, label="cases")
    _algorithm_axis(ax, [task.algorithms[i] for i in order])
    ax.set_ylabel("rank on the case")
    ax.set_title(f"{task.name}: ranking heatmap")
    return fig


def significance_map(task: Task, order: NDArray[np.intp], pairwise: pd.DataFrame) -> Figure:
    """Which algorithm (row) is significantly better than which (column), in ranking order."""
    names = [task.algorithms[i] for i in order]
    rows = pairwise[pairwise.task == task.name]
    sig = rows.pivot(index="algorithm", columns="other", values="significant")
    matrix = sig.reindex(index=names, columns=names).to_numpy(dtype=float)
    size = _width(len(names))
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(np.nan_to_num(matrix), cmap="Blues", vmin=0, vmax=1.4, aspect="equal")
    _algorithm_axis(ax, names)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(map(_literal, names), fontsize=_label_size(len(names)))
    ax.set_xlabel("other algorithm")
    ax.set_ylabel("algorithm (blue: significantly better than the other)")
    ax.set_title(f"{task.name}: significance map (one-sided Wilcoxon, adjusted)")
    return fig


def _blobs(
    ax: Axes,
    xs: Sequence[float],
    ranks: Sequence[NDArray[np.float64]],
    n_samples: int,
    colors: NDArray[np.float64],
) -> None:
    """At each x, circles of area proportional to each rank's share of the samples, a cross at
    the median and a line over the 95% interval (one artist each, fast with 100 algorithms)."""
    px: list[float] = []
    py: list[float] = []
    size: list[float] = []
    color: list[NDArray[np.float64]] = []
    segments, medians = [], []
    for x, r, c in zip(xs, ranks, colors, strict=True):
        values, counts = np.unique(r, return_counts=True)
        px.extend([x] * values.size)
        py.extend(values)
        size.extend(220 * counts / n_samples)
        color.extend([c] * values.size)
        low, high = np.quantile(r, [0.025, 0.975])
        segments.append([(x, low), (x, high)])
        medians.append((x, np.median(r)))
    ax.scatter(px, py, s=size, c=np.asarray(color), alpha=0.8, linewidths=0)
    ax.add_collection(LineCollection(segments, colors="black", linewidths=0.8))
    mx, my = zip(*medians, strict=True)
    ax.scatter(mx, my, marker="x", color="black", s=14, linewidths=0.8)


def blob_task(task: Task, order: NDArray[np.intp], ranks: pd.DataFrame, method: str) -> Figure:
    """Bootstrap ranks of each algorithm: blobs per rank, median, 95% interval, full rank."""
    names = [task.algorithms[i] for i in order]
    rows = ranks[(ranks.method == method) & (ranks.task == task.name)]
    by_algorithm = {a: g["rank"].to_numpy(dtype=float) for a, g in rows.groupby("algorithm")}
    n_samples = rows["b"].nunique()
    colors = _colors(len(names))
    fig = Figure(figsize=(_width(len(names)), 4.5 + 0.02 * len(names)))
    ax = fig.add_subplot()
    _blobs(ax, range(len(names)), [by_algorithm[n] for n in names], n_samples, colors)
    ax.plot([0, len(names) - 1], [1, len(names)], color="0.7", lw=0.5, ls=":")
    _algorithm_axis(ax, names)
    ax.set_ylabel("rank in bootstrap samples")
    ax.set_title(f"{task.name}: bootstrap ranks ({method}, {n_samples} samples)")
    return fig


def blob_across_tasks(result: RankingResult, method: str) -> Figure:
    """Each algorithm's bootstrap ranks in every task side by side, ordered by consensus."""
    cons = result.consensus[result.consensus.method == method]
    names = list(cons.sort_values(["rank", "algorithm"]).algorithm)
    rows = result.bootstrap_ranks[result.bootstrap_ranks.method == method]
    tasks = list(dict.fromkeys(rows.task))
    n_samples = rows["b"].nunique()
    colors = _colors(len(tasks))
    fig = Figure(figsize=(_width(len(names) * max(1, len(tasks)) / 3), 5.0))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(tasks))
    groups = rows.groupby(["task", "algorithm"])["rank"]
    arrays = {key: g.to_numpy(dtype=float) for key, g in groups}
    for t, task in enumerate(tasks):
        xs = [k - 0.4 + width * (t + 0.5) for k in range(len(names))]
        ranks = [arrays[(task, name)] for name in names]
        _blobs(ax, xs, ranks, n_samples, np.repeat(colors[t : t + 1], len(names), axis=0))
        ax.scatter([], [], color=colors[t], label=task)
    _algorithm_axis(ax, names)
    ax.legend(fontsize=7, loc="upper left", title="task")
    ax.set_ylabel("rank in bootstrap samples")
    ax.set_title(f"Bootstrap ranks across tasks ({method}; algorithms by consensus rank)")
    return fig


def kendall_violin(kendall: pd.DataFrame, method: str) -> Figure:
    """Distribution of Kendall's tau between bootstrap and full rankings, per task."""
    rows = kendall[kendall.method == method]
    tasks = list(dict.fromkeys(rows.task))
    data = [rows[rows.task == t]["tau"].dropna().to_numpy() for t in tasks]
    fig = Figure(figsize=(max(5.0, 1.2 * len(tasks) + 2), 4.0))
    ax = fig.add_subplot()
    present = [i for i, d in enumerate(data) if d.size > 1 and np.ptp(d) > 0]
    if present:
        ax.violinplot([data[i] for i in present], positions=present, showmedians=True)
    for i, d in enumerate(data):
        if i not in present and d.size:
            ax.scatter([i], [d[0]], color="tab:blue")
    ax.set_xticks(np.arange(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Kendall's tau-b vs full ranking")
    ax.set_title(f"Ranking stability ({method})")
    return fig


def write_plots(result: RankingResult, out_dir: Path) -> list[Plot]:
    """Write every plot for the first ranking method into ``out_dir``; return them in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    method = str(result.settings["methods"][0])  # type: ignore[index]
    plots = []
    has_bootstrap = not result.bootstrap_ranks.empty
    for task in result.tasks:
        order = _order(result, task, method)
        slug = _slug(task.name)
        plots.append(
            _save(boxplot(task, order), out_dir, f"boxplot_{slug}", f"{task.name}: values")
        )
        plots.append(_save(podium(task, order), out_dir, f"podium_{slug}", f"{task.name}: podium"))
        plots.append(
            _save(
                ranking_heatmap(task, order),
                out_dir,
                f"ranking_heatmap_{slug}",
                f"{task.name}: ranking heatmap",
            )
        )
        plots.append(
            _save(
                significance_map(task, order, result.pairwise),
                out_dir,
                f"significance_map_{slug}",
                f"{task.name}: significance map",
            )
        )
        if has_bootstrap:
            plots.append(
                _save(
                    blob_task(task, order, result.bootstrap_ranks, method),
                    out_dir,
                    f"blob_{slug}",
                    f"{task.name}: bootstrap blob plot",
                )
            )
    if has_bootstrap:
        plots.append(
            _save(
                blob_across_tasks(result, method),
                out_dir,
                "blob_across_tasks",
                "Bootstrap ranks across tasks",
            )
        )
        plots.append(
            _save(
                kendall_violin(result.kendall, method),
                out_dir,
                "kendall_violin",
                "Kendall's tau per task",
            )
        )
    return plots
