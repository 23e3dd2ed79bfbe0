"""Ranking plots stay readable with many algorithms: the figure grows with them."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covseg.ranking import plots, run_ranking
from covseg.ranking.table import Task


def _task(n: int) -> Task:
    rng = np.random.default_rng(0)
    names = tuple(f"team{k:03d}" for k in range(n))
    return Task("dice", names, tuple(f"c{i}" for i in range(5)), rng.uniform(0, 1, (n, 5)), 1.0)


def test_figures_widen_with_the_number_of_algorithms() -> None:
    small, large = _task(8), _task(100)
    order_small, order_large = np.arange(8), np.arange(100)
    for make in (plots.boxplot, plots.podium, plots.ranking_heatmap):
        narrow = make(small, order_small).get_size_inches()[0]
        wide = make(large, order_large).get_size_inches()[0]
        assert wide >= 100 * 0.15 > narrow  # at least ~0.15 inch per algorithm label
    # every algorithm keeps its own tick label, in ranking order
    labels = [
        t.get_text() for t in plots.boxplot(large, order_large[::-1]).axes[0].get_xticklabels()
    ]
    assert labels == [f"team{k:03d}" for k in range(99, -1, -1)]


def test_ranking_heatmap_rank_axis_starts_at_1() -> None:
    fig = plots.ranking_heatmap(_task(10), np.arange(10))
    ax = fig.axes[0]
    assert ax.images[0].get_extent() == [-0.5, 9.5, 10.5, 0.5]  # row k drawn at rank k + 1
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == "1" and "0" not in ticks and ticks[-1] == "10"
    # the counts of a column are the algorithm's places: rank 1 at the top row
    counts = ax.images[0].get_array()
    best = int(np.argmax(_task(10).values[:, 0]))  # the winner of case c0
    assert counts[0, best] >= 1 and counts[0].sum() == 5  # one winner per case, in row 1


def test_team_names_are_literal_text_never_mathtext() -> None:
    names = (r"$\frac{$", "$x$", "plain")  # unescaped, the first would fail to parse
    rng = np.random.default_rng(1)
    task = Task("dice $1$", names, ("c0", "c1", "c2"), rng.uniform(0, 1, (3, 3)), 1.0)
    order = np.arange(3)
    for make in (plots.boxplot, plots.podium, plots.ranking_heatmap):
        fig = make(task, order)
        fig.savefig(io.BytesIO(), format="png")  # draws every label
    shown = [
        t.get_text().replace("\\$", "$")
        for t in plots.boxplot(task, order).axes[0].get_xticklabels()
    ]
    assert shown == list(names)


def test_one_algorithm_and_every_method_get_every_plot(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"task": "t", "case": [f"c{k}" for k in range(5)], "algorithm": "only", "value": 0.5}
    )
    result = run_ranking(table, methods=["all"], bootstrap=5)
    written = plots.write_plots(result, tmp_path, workers=1)
    assert {p.method for p in written} == {
        "aggregate-then-rank",
        "rank-then-aggregate",
        "test-then-rank",
        "",
    }
    assert written[-1].path == tmp_path / "line_plot.png"
    assert len(written) == 3 * 7 + 1 and all(p.path.stat().st_size > 0 for p in written)
    one = run_ranking(table, methods=["test-then-rank"], bootstrap=5)
    assert all(p.path.parent == tmp_path / "one" for p in plots.write_plots(one, tmp_path / "one"))


def test_an_unknown_plot_format_writes_nothing(tmp_path: Path) -> None:
    from covseg.ranking.report import write_outputs

    table = pd.DataFrame({"task": "t", "case": ["c0", "c1"], "algorithm": "only", "value": 0.5})
    result = run_ranking(table, methods=["test-then-rank"], bootstrap=0)
    with pytest.raises(ValueError, match="unknown plot format 'gif'"):
        write_outputs(result, tmp_path / "out", "gif")
    assert not (tmp_path / "out").exists()
