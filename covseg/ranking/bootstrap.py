"""Bootstrap of the rankings: cases resampled per task, every method re-run on every sample.

Draws are index arrays ``(samples, cases)`` per task, made from a seed or read from a
``b, task, pos, case`` table so that a run can be replayed exactly (challengeR's draws
included). The work is split into blocks of samples run on threads; numpy releases the GIL and
BLAS is held to one thread per block, which is faster than nested threading on a few cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from covseg.ranking import stats
from covseg.ranking.methods import Method, Options, score, task_view
from covseg.ranking.table import RankingInputError, Task

Draws = dict[str, NDArray[np.intp]]
_BLOCK = 250  # samples per unit of work (and per progress step)


def make_draws(tasks: Sequence[Task], n_samples: int, seed: int) -> Draws:
    """Draw ``n_samples`` resamples of each task's cases, with replacement, from ``seed``."""
    rng = np.random.default_rng(seed)
    return {
        t.name: rng.integers(0, len(t.cases), size=(n_samples, len(t.cases)), dtype=np.intp)
        for t in tasks
    }


def draws_from_frame(frame: pd.DataFrame, tasks: Sequence[Task]) -> Draws:
    """Read draws from a table with columns ``b, task, pos, case`` (``pos`` orders a sample).

    Every task must have the same samples, each drawing as many cases as the task has.
    """
    missing = {"b", "task", "pos", "case"} - set(frame.columns)
    if missing:
        raise RankingInputError(f"draws lack column(s) {sorted(missing)}")
    frame = frame.astype({"task": str, "case": str})
    draws: Draws = {}
    samples = None
    for task in tasks:
        rows = frame[frame["task"] == task.name].sort_values(["b", "pos"], kind="stable")
        if rows.empty:
            raise RankingInputError(f"draws have no rows for task {task.name}")
        index = {case: i for i, case in enumerate(task.cases)}
        cases = rows["case"].map(index)
        if cases.isna().any():
            bad = rows["case"][cases.isna()].iloc[0]
            raise RankingInputError(f"draws: case {bad} is not in task {task.name}")
        sizes = rows.groupby("b").size()
        if (sizes != len(task.cases)).any():
            raise RankingInputError(
                f"draws: each sample of task {task.name} must draw {len(task.cases)} cases"
            )
        ids = tuple(sizes.index)
        if samples is not None and ids != samples:
            raise RankingInputError("draws: all tasks must have the same samples b")
        samples = ids
        indices = np.asarray(cases.to_numpy(), dtype=np.intp)
        draws[task.name] = indices.reshape(len(ids), len(task.cases))
    return draws


def draws_to_frame(draws: Draws, tasks: Sequence[Task]) -> pd.DataFrame:
    """The draws as a ``b, task, pos, case`` table (1-based ``b`` and ``pos``)."""
    parts = []
    for task in tasks:
        d = draws[task.name]
        parts.append(
            pd.DataFrame(
                {
                    "b": np.repeat(np.arange(1, d.shape[0] + 1), d.shape[1]),
                    "task": task.name,
                    "pos": np.tile(np.arange(1, d.shape[1] + 1), d.shape[0]),
                    "case": np.asarray(task.cases)[d.ravel()],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@dataclass
class BootstrapResult:
    """``ranks``: method, task, algorithm, b, rank; ``kendall``: method, task, b, tau."""

    ranks: pd.DataFrame
    kendall: pd.DataFrame


def run_bootstrap(
    methods: Sequence[Method],
    tasks: Sequence[Task],
    draws: Draws,
    options: Options,
    full_ranks: dict[tuple[str, str], NDArray[np.float64]],
    on_block: Callable[[int], None] | None = None,
) -> BootstrapResult:
    """Rank every sample with every method; Kendall's tau-b of each against the full ranking.

    ``full_ranks[(method name, task name)]`` is the full-data ranking; ``on_block(n)`` is
    called after each block of ``n`` samples (for a progress bar).
    """
    units = [
        (method, task_view(method, task), start)
        for method in methods
        for task in tasks
        for start in range(0, draws[task.name].shape[0], _BLOCK)
    ]

    def run(unit: tuple[Method, Task, int]) -> NDArray[np.float64]:
        method, task, start = unit
        block = draws[task.name][start : start + _BLOCK]
        ranks = score(method, task, block, options).rank
        if on_block is not None:
            on_block(block.shape[0])
        return ranks

    workers = min(len(units), os.cpu_count() or 1) or 1
    # the limit is process-wide, so it is set once around all the threads
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
        blocks = list(pool.map(run, units))
    ranks, kendall = [], []
    for (method, task, start), block in zip(units, blocks, strict=True):
        b = np.arange(start + 1, start + block.shape[0] + 1)
        ranks.append(
            pd.DataFrame(
                {
                    "method": method.name,
                    "task": task.name,
                    "algorithm": np.tile(np.asarray(task.algorithms), block.shape[0]),
                    "b": np.repeat(b, block.shape[1]),
                    "rank": block.ravel().astype(int),
                }
            )
        )
        tau = stats.kendall_tau_b(block, full_ranks[(method.name, task.name)])
        kendall.append(pd.DataFrame({"method": method.name, "task": task.name, "b": b, "tau": tau}))
    return BootstrapResult(
        pd.concat(ranks, ignore_index=True), pd.concat(kendall, ignore_index=True)
    )


def summarize_ranks(ranks: pd.DataFrame, rankings: pd.DataFrame) -> pd.DataFrame:
    """Per method, task and algorithm: the full-data rank and the bootstrap rank distribution.

    Columns ``method, task, algorithm, rank, mean_rank, median_rank, q025, q975, prop_rank1,
    rank_freq`` (quantiles as R's default type 7; ``rank_freq`` like ``"1:980;2:20"``).
    """
    keys = ["method", "task", "algorithm"]
    group = ranks.groupby(keys, sort=False).ngroup().to_numpy()  # numbered by first appearance
    _, first = np.unique(group, return_index=True)
    values = ranks["rank"].to_numpy(dtype=np.intp)
    width = int(values.max()) + 1
    # counts[g, r]: how often group g took rank r; every statistic follows from the counts
    counts = np.bincount(group * width + values, minlength=first.size * width).reshape(-1, width)
    n = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)

    def order_statistic(k: NDArray[np.intp]) -> NDArray[np.float64]:
        """The k-th smallest rank of each group (0-based)."""
        return (cumulative <= k[:, None]).sum(axis=1).astype(np.float64)

    def quantile(p: float) -> NDArray[np.float64]:
        """R's type 7 (numpy's linear) quantile, with numpy's interpolation arithmetic."""
        h = (n - 1) * p
        low = np.floor(h)
        t = h - low
        a = order_statistic(low.astype(np.intp))
        b = order_statistic(np.minimum(low.astype(np.intp) + 1, n - 1))
        diff = b - a
        return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)

    freq = [
        ";".join(f"{r}:{c}" for r, c in zip(np.flatnonzero(row), row[row > 0], strict=True))
        for row in counts
    ]
    summary = ranks.iloc[first][keys].reset_index(drop=True)
    summary = summary.assign(
        mean_rank=(counts * np.arange(width)).sum(axis=1) / n,
        median_rank=quantile(0.5),
        q025=quantile(0.025),
        q975=quantile(0.975),
        prop_rank1=counts[:, 1] / n,
        rank_freq=freq,
    )
    full = rankings[["method", "task", "algorithm", "rank"]]
    summary = full.merge(summary, on=["method", "task", "algorithm"], how="inner")
    return summary.sort_values(["method", "task", "rank", "algorithm"], kind="stable").reset_index(
        drop=True
    )


def summarize_kendall(kendall: pd.DataFrame) -> pd.DataFrame:
    """Per method and task: mean, median, quartiles of tau and ``n_na`` (undefined taus)."""
    grouped = kendall.groupby(["method", "task"], sort=False)["tau"]
    return grouped.agg(
        mean="mean",
        median="median",
        q25=lambda t: float(np.nanquantile(t, 0.25)) if t.notna().any() else np.nan,
        q75=lambda t: float(np.nanquantile(t, 0.75)) if t.notna().any() else np.nan,
        n_na=lambda t: int(t.isna().sum()),
    ).reset_index()


def summarize_consensus(ranks: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """The Euclidean consensus of every bootstrap sample, and its rank distribution.

    Sample b's consensus uses every task's ranking on sample b (ties as average ranks, mean
    over the tasks where the algorithm takes part, ranked with ties "min"), as the full-data
    consensus does. Columns ``method, algorithm, value, rank, median_rank, q025, q975``
    (quantiles as R's type 7), in the order of ``consensus``.
    """
    parts = []
    for method, rows in ranks.groupby("method", sort=False):
        wide = rows.pivot(index=["task", "b"], columns="algorithm", values="rank")
        tasks = wide.index.get_level_values("task").unique()
        cube = wide.to_numpy(dtype=np.float64).reshape(len(tasks), -1, wide.shape[1])
        if np.isnan(cube).any():  # an algorithm not ranked in a task
            average = stats.rank_average(cube, larger_better=False)
        else:  # the same ranks by sorting, without the pairwise comparisons
            average = rankdata(cube, method="average", axis=-1)
        mean_rank = stats.mean(np.moveaxis(average, 0, -1))
        sample_rank = stats.rank_min(mean_rank, larger_better=False)  # [b, algorithm]
        low, median, high = np.quantile(sample_rank, [0.025, 0.5, 0.975], axis=0)
        parts.append(
            pd.DataFrame(
                {
                    "method": method,
                    "algorithm": wide.columns,
                    "median_rank": median,
                    "q025": low,
                    "q975": high,
                }
            )
        )
    if not parts:
        return pd.DataFrame()
    return consensus.merge(pd.concat(parts), on=["method", "algorithm"], how="inner")
