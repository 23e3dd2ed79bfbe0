"""Ranking plots (matplotlib), sized to stay readable with 100 algorithms and quick to write.

For every ranking method, per task: dots-and-boxplot, podium, ranking heatmap, significance map
and bootstrap blob plot; across tasks: a blob plot and a violin of Kendall's tau per task. With
several methods, challengeR's line plot shows each algorithm's rank under every method. Algorithms
are ordered by their rank under the plot's method; figures grow with the number of algorithms.

Speed (98 algorithms x 6 tasks): every kind of mark is one artist (a scatter or a line
collection, never one artist per point or box), margins are computed from the labels' widths so
that saving needs no second "tight bbox" drawing, and each plot is saved once per requested
format (PNG by default). Every label is literal text: a ``$`` in a team name is escaped, never
read as mathtext.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath
from numpy.typing import NDArray

from covseg.ranking import stats
from covseg.ranking.methods import Method, task_view
from covseg.ranking.result import RankingResult
from covseg.ranking.table import Task

DPI = 100
FORMATS: dict[str, tuple[str, ...]] = {
    "png": ("png",),
    "svg": ("svg",),
    "both": ("png", "svg"),
    "none": (),
}
"""``plot_format`` values (``covseg rank --plots``) and the files each writes."""


@dataclass(frozen=True)
class Plot:
    """A written plot: its method (``""`` for plots across methods), title and first file."""

    method: str
    title: str
    path: Path


def _literal(text: str) -> str:
    """``text`` as matplotlib prints it verbatim: ``$`` escaped, so no mathtext is parsed (a
    name like ``T $\\bad$`` would otherwise stop the plot)."""
    return text.replace("$", r"\$")


def _label_size(n: int) -> float:
    return 9.0 if n <= 30 else 6.0


@lru_cache(maxsize=4096)
def _text_width(text: str, size: float) -> float:
    """Width of ``text`` in inches at font ``size`` (points), as plain text."""
    width, _, _ = TextToPath().get_text_width_height_descent(
        _literal(text), FontProperties(size=size), ismath=False
    )
    return float(width) / 72.0


def _labels_extent(labels: Sequence[str], size: float) -> float:
    """Inches needed by rotated (or left) tick labels, with the tick and some air."""
    return max((_text_width(s, size) for s in labels), default=0.0) + 0.15


def _figure(
    plot_w: float, plot_h: float, left: float, bottom: float, right: float = 0.25, top: float = 0.45
) -> tuple[Figure, Axes]:
    """A figure whose axes is ``plot_w`` x ``plot_h`` inches with fixed margins (inches)."""
    width, height = plot_w + left + right, plot_h + bottom + top
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, plot_w / width, plot_h / height))
    return fig, ax


def _plot_width(n: int) -> float:
    return max(5.0, 0.16 * n)


def _colors(n: int) -> NDArray[np.float64]:
    cmap = colormaps["tab10" if n <= 10 else "turbo"]
    return np.asarray(cmap(np.linspace(0.05, 0.95, n) if n > 10 else np.arange(n)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _rank_ticks(ax: Axes, n: int, axis: str = "y") -> None:
    """Integer rank ticks starting at 1 (1, 10, 20, ... for long lists)."""
    step = 1 if n <= 20 else 10
    ticks = [1, *range(step if step > 1 else 2, n + 1, step)]
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks)


def _order(result: RankingResult, task: Task, method: str) -> NDArray[np.intp]:
    """Algorithm indices of ``task`` sorted by rank (then name) under ``method``."""
    ranks = result.rankings[
        (result.rankings.method == method) & (result.rankings.task == task.name)
    ]
    rank = ranks.set_index("algorithm").loc[list(task.algorithms), "rank"].to_numpy()
    return np.lexsort((np.arange(len(rank)), rank))


def _algorithm_axis(ax: Axes, names: Sequence[str]) -> None:
    ax.set_xticks(
        np.arange(len(names)),
        [_literal(n) for n in names],
        rotation=90,
        fontsize=_label_size(len(names)),
    )
    ax.set_xlim(-0.7, len(names) - 0.3)


def _bottom(names: Sequence[str], xlabel: bool = False) -> float:
    return _labels_extent(names, _label_size(len(names))) + (0.35 if xlabel else 0.1)


def _box_segments(values: NDArray[np.float64]) -> tuple[list[NDArray], list[NDArray]]:
    """Outline (box, whiskers, caps) and median segments of one box per row (matplotlib's
    rule: quartiles by linear interpolation, whiskers to the furthest value within 1.5 IQR)."""
    outline: list[NDArray[np.float64]] = []
    medians: list[NDArray[np.float64]] = []
    for x, row in enumerate(values):
        v = row[~np.isnan(row)]
        if v.size == 0:
            continue
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        iqr = q3 - q1
        low = v[v >= q1 - 1.5 * iqr].min()
        high = v[v <= q3 + 1.5 * iqr].max()
        a, b = x - 0.3, x + 0.3
        outline.extend(
            np.asarray(s)
            for s in (
                [(a, q1), (b, q1), (b, q3), (a, q3), (a, q1)],
                [(x, q1), (x, low)],
                [(x, q3), (x, high)],
                [(x - 0.15, low), (x + 0.15, low)],
                [(x - 0.15, high), (x + 0.15, high)],
            )
        )
        medians.append(np.asarray([(a, med), (b, med)]))
    return outline, medians


def boxplot(task: Task, order: NDArray[np.intp]) -> Figure:
    """Every case's value as a dot over a boxplot, one column per algorithm."""
    values = task.sign * task.values[order]
    names = [task.algorithms[i] for i in order]
    fig, ax = _figure(_plot_width(len(names)), 3.6, left=0.8, bottom=_bottom(names))
    outline, medians = _box_segments(values)
    ax.add_collection(LineCollection(outline, colors="0.25", linewidths=0.8))
    ax.add_collection(LineCollection(medians, colors="tab:orange", linewidths=1.2))
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, values.shape)
    x = np.arange(len(names))[:, None] + jitter
    ax.scatter(x.ravel(), values.ravel(), s=6, alpha=0.5, color="tab:blue", linewidths=0)
    _algorithm_axis(ax, names)
    ax.set_ylabel("value" + (" (smaller is better)" if task.sign < 0 else ""))
    ax.set_title(_literal(f"{task.name}: values per case"), fontsize=10)
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
    places = [str(p + 1) for p in range(n)]
    width = _plot_width(n)
    bottom_in = _bottom(places, xlabel=True)
    fig, top = _figure(width, 3.2, left=0.8, bottom=bottom_in + (1.3 if with_bars else 0.0))
    offsets = np.linspace(-0.35, 0.35, n) if n > 1 else np.zeros(1)
    ok = ~np.isnan(case_ranks)
    x = (case_ranks - 1 + offsets[:, None])[ok]
    point_colors = np.repeat(colors[:, None, :], case_ranks.shape[1], axis=1)[ok]
    top.scatter(x, values[ok], s=8, c=point_colors, linewidths=0)
    top.vlines(np.arange(n) - 0.5, 0, 1, transform=top.get_xaxis_transform(), colors="0.85", lw=0.5)
    top.set_ylabel("value on the case")
    top.set_title(
        _literal(f"{task.name}: podium (place on each case; colours: algorithms by rank)"),
        fontsize=10,
    )
    top.set_xlim(-0.5, n - 0.5)
    axis = top
    if with_bars:
        fig_w, fig_h = fig.get_size_inches()
        bottom = fig.add_axes(
            (0.8 / fig_w, bottom_in / fig_h, width / fig_w, 1.0 / fig_h), sharex=top
        )
        for k in range(n):
            freq = np.bincount(case_ranks[k][ok[k]].astype(int) - 1, minlength=n)
            bottom.bar(np.arange(n) + offsets[k], freq, width=0.7 / n, color=colors[k])
            top.scatter([], [], color=colors[k], label=_literal(task.algorithms[order[k]]))
        top.legend(fontsize=7, loc="upper right")
        top.tick_params(labelbottom=False)
        bottom.set_ylabel("cases")
        axis = bottom
    axis.set_xticks(np.arange(n), places, fontsize=_label_size(n), rotation=90 if n > 30 else 0)
    axis.set_xlabel("place on the case")
    return fig


def ranking_heatmap(task: Task, order: NDArray[np.intp]) -> Figure:
    """How many cases each algorithm (columns, in ranking order) placed at each rank (rows,
    rank 1 at the top)."""
    n = len(order)
    case_ranks = stats.rank_min(task.values.T).T[order]
    counts = np.zeros((n, n))
    for k in range(n):
        r = case_ranks[k][~np.isnan(case_ranks[k])].astype(int) - 1
        counts[:, k] = np.bincount(r, minlength=n)
    names = [task.algorithms[i] for i in order]
    size = _plot_width(n)
    fig, ax = _figure(size, size * 0.7, left=0.8, bottom=_bottom(names), right=1.2)
    image = ax.imshow(
        counts,
        cmap="viridis",
        origin="upper",
        aspect="auto",
        extent=(-0.5, n - 0.5, n + 0.5, 0.5),  # row k is rank k + 1
        interpolation="nearest",
    )
    fig_w, fig_h = fig.get_size_inches()
    pos = ax.get_position()
    cax = fig.add_axes((pos.x1 + 0.15 / fig_w, pos.y0, 0.2 / fig_w, pos.height))
    fig.colorbar(image, cax=cax, label="cases")
    _algorithm_axis(ax, names)
    _rank_ticks(ax, n)
    ax.set_ylabel("rank on the case")
    ax.set_title(_literal(f"{task.name}: ranking heatmap"), fontsize=10)
    return fig


def significance_map(task: Task, order: NDArray[np.intp], pairwise: pd.DataFrame) -> Figure:
    """Which algorithm (row) is significantly better than which (column), in ranking order."""
    names = [task.algorithms[i] for i in order]
    rows = pairwise[pairwise.task == task.name]
    sig = rows.pivot(index="algorithm", columns="other", values="significant")
    matrix = sig.reindex(index=names, columns=names).to_numpy(dtype=float)
    size = _plot_width(len(names))
    margin = _bottom(names, xlabel=True)
    fig, ax = _figure(size, size, left=margin + 0.25, bottom=margin)
    ax.imshow(
        np.nan_to_num(matrix),
        cmap="Blues",
        vmin=0,
        vmax=1.4,
        aspect="auto",
        interpolation="nearest",
    )
    _algorithm_axis(ax, names)
    ax.set_yticks(
        np.arange(len(names)), [_literal(n) for n in names], fontsize=_label_size(len(names))
    )
    ax.set_xlabel("other algorithm")
    ax.set_ylabel("algorithm (blue: significantly better than the other)")
    ax.set_title(
        _literal(f"{task.name}: significance map (one-sided Wilcoxon, adjusted)"), fontsize=10
    )
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
    if not px:
        return
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
    fig, ax = _figure(
        _plot_width(len(names)), 3.6 + 0.02 * len(names), left=0.8, bottom=_bottom(names)
    )
    _blobs(ax, range(len(names)), [by_algorithm[n] for n in names], n_samples, colors)
    ax.plot([0, len(names) - 1], [1, len(names)], color="0.7", lw=0.5, ls=":")
    _algorithm_axis(ax, names)
    ax.set_ylim(0.5, len(names) + 0.5)
    _rank_ticks(ax, len(names))
    ax.set_ylabel("rank in bootstrap samples")
    ax.set_title(
        _literal(f"{task.name}: bootstrap ranks ({method}, {n_samples} samples)"), fontsize=10
    )
    return fig


def blob_across_tasks(result: RankingResult, method: str) -> Figure:
    """Each algorithm's bootstrap ranks in every task side by side, ordered by consensus."""
    cons = result.consensus[result.consensus.method == method]
    names = list(cons.sort_values(["rank", "algorithm"]).algorithm)
    rows = result.bootstrap_ranks[result.bootstrap_ranks.method == method]
    tasks = list(rows.task.unique())
    n_samples = rows["b"].nunique()
    colors = _colors(len(tasks))
    fig, ax = _figure(
        _plot_width(int(len(names) * max(1, len(tasks)) / 3)),
        4.0,
        left=0.8,
        bottom=_bottom(names),
    )
    width = 0.8 / max(1, len(tasks))
    groups = rows.groupby(["task", "algorithm"])["rank"]
    arrays = {key: g.to_numpy(dtype=float) for key, g in groups}
    for t, task in enumerate(tasks):
        present = [(k, arrays[(task, n)]) for k, n in enumerate(names) if (task, n) in arrays]
        xs = [k - 0.4 + width * (t + 0.5) for k, _ in present]
        color = np.repeat(colors[t : t + 1], len(present), axis=0)
        _blobs(ax, xs, [r for _, r in present], n_samples, color)
        ax.scatter([], [], color=colors[t], label=_literal(task))
    _algorithm_axis(ax, names)
    _rank_ticks(ax, len(names))
    ax.legend(fontsize=7, loc="upper left", title="task")
    ax.set_ylabel("rank in bootstrap samples")
    ax.set_title(
        _literal(f"Bootstrap ranks across tasks ({method}; algorithms by consensus rank)"),
        fontsize=10,
    )
    return fig


def kendall_violin(kendall: pd.DataFrame, method: str) -> Figure:
    """Distribution of Kendall's tau between bootstrap and full rankings, per task."""
    rows = kendall[kendall.method == method]
    tasks = list(rows.task.unique())
    data = [rows[rows.task == t]["tau"].dropna().to_numpy() for t in tasks]
    fig, ax = _figure(
        max(4.0, 1.0 * len(tasks)), 3.2, left=0.8, bottom=_labels_extent(tasks, 10) * 0.75 + 0.1
    )
    present = [i for i, d in enumerate(data) if d.size > 1 and np.ptp(d) > 0]
    if present:
        ax.violinplot([data[i] for i in present], positions=present, showmedians=True)
    lone = [(i, d[0]) for i, d in enumerate(data) if i not in present and d.size]
    if lone:
        ax.scatter(*zip(*lone, strict=True), color="tab:blue")
    ax.set_xticks(np.arange(len(tasks)), [_literal(t) for t in tasks], rotation=45, ha="right")
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Kendall's tau-b vs full ranking")
    ax.set_title(_literal(f"Ranking stability ({method})"), fontsize=10)
    return fig


def line_plot(result: RankingResult) -> Figure:
    """challengeR's line plot: each algorithm's rank under every method, one panel per task.

    One line per algorithm across the methods (coloured by its consensus rank under the first
    method); flat lines mean a ranking that does not depend on the method.
    """
    methods = [str(m) for m in result.settings["methods"]]  # type: ignore[attr-defined]
    tasks = [t.name for t in result.tasks]
    first = result.consensus[result.consensus.method == methods[0]]
    order = list(first.sort_values(["rank", "algorithm"]).algorithm)
    color_of = dict(zip(order, _colors(len(order)), strict=True))
    n_alg = len(order)
    cols = min(3, len(tasks))
    rows_n = -(-len(tasks) // cols)
    panel_w, panel_h = 1.2 + 0.9 * len(methods), 2.5 + 0.03 * n_alg
    label_w = _labels_extent(methods, 8) * 0.75
    legend_w = _labels_extent(order, 7) + 0.6 if n_alg <= 20 else 0.0  # readable up to ~20
    width = cols * (panel_w + 0.7) + 0.3 + legend_w
    fig = Figure(figsize=(width, rows_n * (panel_h + label_w + 0.5) + 0.4))
    wide = result.rankings.pivot_table(
        index=["task", "algorithm"], columns="method", values="rank"
    )[methods]
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        ranks = wide.loc[task]
        names = [a for a in order if a in ranks.index]
        y = ranks.loc[names].to_numpy(dtype=float)
        x = np.arange(len(methods), dtype=float)
        segments = [np.column_stack([x, row]) for row in y]
        colors = np.asarray([color_of[a] for a in names])
        ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.8, alpha=0.8))
        ax.scatter(np.tile(x, len(names)), y.ravel(), s=6, c=np.repeat(colors, len(x), axis=0))
        ax.set_xticks(x, [_literal(m) for m in methods], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.3, len(methods) - 0.7)
        ax.set_ylim(n_alg + 0.5, 0.5)
        _rank_ticks(ax, n_alg)
        ax.set_ylabel("rank")
        ax.set_title(_literal(task), fontsize=9)
    fig.subplots_adjust(
        hspace=(label_w + 0.4) / panel_h,
        wspace=0.7 / panel_w,
        bottom=label_w / fig.get_size_inches()[1],
        right=1 - (legend_w + 0.2) / width,
    )
    if legend_w:
        handles = [
            Line2D([], [], color=color_of[a], marker="o", markersize=3, lw=0.8) for a in order
        ]
        fig.legend(handles, [_literal(a) for a in order], loc="upper right", fontsize=7)
    fig.suptitle("Ranks under every method (line plot)", fontsize=10)
    return fig


def _save(fig: Figure, out_dir: Path, name: str, formats: Sequence[str]) -> Path:
    paths = [out_dir / f"{name}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=DPI)
    return paths[0]


def write_plots(
    result: RankingResult, out_dir: Path, plot_format: str = "png", workers: int | None = None
) -> list[Plot]:
    """Write every plot of every ranking method into ``out_dir``; return them in order.

    With one method the files lie in ``out_dir``; with several, each method's in its own
    sub-folder (``out_dir/test-then-rank/...``) and the line plot in ``out_dir``. ``workers``
    processes render the plots (default: the CPUs available, at most 4, when this process runs
    no other thread, so never forked from a server's thread pool; 1 renders here).
    """
    if plot_format not in FORMATS:
        raise ValueError(f"unknown plot format {plot_format!r} (use {', '.join(FORMATS)})")
    formats = FORMATS[plot_format]
    if not formats:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(result, out_dir)
    for folder in {job[0] for job in jobs}:
        folder.mkdir(exist_ok=True)
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        workers = min(4, cpus) if threading.active_count() == 1 else 1
    global _WORK
    _WORK = (jobs, formats)
    try:
        if workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods():
            # forked workers inherit the jobs (and the result) without pickling them
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                paths = list(pool.map(_render, range(len(jobs))))
        else:
            paths = [_render(i) for i in range(len(jobs))]
    finally:
        _WORK = None
    return [Plot(job[1], job[3], path) for job, path in zip(jobs, paths, strict=True)]


_Job = tuple[Path, str, str, str, Callable[[], Figure]]  # folder, method, stem, title, factory
_WORK: tuple[list[_Job], tuple[str, ...]] | None = None


def _render(index: int) -> Path:
    """Build and save plot ``index`` of the current :func:`write_plots` call."""
    assert _WORK is not None
    jobs, formats = _WORK
    folder, _, stem, _, make = jobs[index]
    return _save(make(), folder, stem, formats)


def _jobs(result: RankingResult, out_dir: Path) -> list[_Job]:
    """Every plot to write, in report order."""
    methods = [str(m) for m in result.settings["methods"]]  # type: ignore[attr-defined]
    jobs: list[_Job] = []
    for method in methods:
        folder = out_dir / _slug(method) if len(methods) > 1 else out_dir
        jobs += [(folder, method, stem, title, make) for stem, title, make in _plan(result, method)]
    if len(methods) > 1:
        title = "Ranks under every method (line plot)"
        jobs.append((out_dir, "", "line_plot", title, partial(line_plot, result)))
    return jobs


def _plan(result: RankingResult, method: str) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file stem, title, figure factory) of every plot of ``method``, in report order."""
    boot = result.bootstrap_ranks
    has_bootstrap = not boot.empty
    per_task = dict(list(boot[boot.method == method].groupby("task", sort=False)))
    plan: list[tuple[str, str, Callable[[], Figure]]] = []
    for full_task in result.tasks:
        task = task_view(Method.parse(method), full_task)
        order = _order(result, task, method)
        slug = _slug(task.name)
        plan += [
            (f"boxplot_{slug}", f"{task.name}: values", partial(boxplot, task, order)),
            (f"podium_{slug}", f"{task.name}: podium", partial(podium, task, order)),
            (
                f"ranking_heatmap_{slug}",
                f"{task.name}: ranking heatmap",
                partial(ranking_heatmap, task, order),
            ),
            (
                f"significance_map_{slug}",
                f"{task.name}: significance map",
                partial(significance_map, task, order, result.pairwise),
            ),
        ]
        if task.name in per_task:
            plan.append(
                (
                    f"blob_{slug}",
                    f"{task.name}: bootstrap blob plot",
                    partial(blob_task, task, order, per_task[task.name], method),
                )
            )
    if has_bootstrap:
        plan += [
            (
                "blob_across_tasks",
                "Bootstrap ranks across tasks",
                partial(blob_across_tasks, result, method),
            ),
            (
                "kendall_violin",
                "Kendall's tau per task",
                partial(kendall_violin, result.kendall, method),
            ),
        ]
    return plan
