"""Ranking plots stay readable with many algorithms: the figure grows with them."""

import numpy as np

from covseg.ranking import plots
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
