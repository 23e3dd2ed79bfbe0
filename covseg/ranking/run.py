"""``run_ranking``: every requested method on every task, the consensus, the bootstrap.

Pure: it writes nothing. :func:`covseg.ranking.report.write_outputs` writes the CSVs, plots
and ``report.html`` of its result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from covseg.ranking import stats
from covseg.ranking.bootstrap import (
    draws_from_frame,
    draws_to_frame,
    make_draws,
    run_bootstrap,
    summarize_consensus,
    summarize_kendall,
    summarize_ranks,
)
from covseg.ranking.consensus import CONSENSUS, consensus
from covseg.ranking.methods import (
    METHODS,
    MODES,
    Method,
    Options,
    full_sample,
    score,
    task_view,
)
from covseg.ranking.result import RankingResult
from covseg.ranking.table import MISSING, RankingInputError, Task, build_tasks, validate_table


def parse_methods(methods: Iterable[str]) -> list[Method]:
    """Method specs to :class:`Method` objects; ``"all"`` means the three methods."""
    specs = list(methods)
    if "all" in specs:
        specs = [*METHODS, *(s for s in specs if s not in ("all", *METHODS))]
    if not specs:
        raise ValueError("no ranking method given")
    return [Method.parse(s) for s in dict.fromkeys(specs)]


def run_ranking(
    table: pd.DataFrame,
    *,
    methods: Iterable[str] = ("test-then-rank",),
    bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    adjust: str = "holm",
    mode: str = "statistical",
    smaller_better: Iterable[str] = (),
    draws: pd.DataFrame | None = None,
    progress: bool = False,
    ties: str = "min",
    missing: str = "na.rm",
) -> RankingResult:
    """Rank the algorithms of a long table (``task, case, algorithm, value``) per task.

    Parameters
    ----------
    table
        One row per task, case and algorithm; NaN or absent rows are missing results.
    methods
        ``aggregate-then-rank`` (``:median``, ``:min``, ``:max`` for another aggregate),
        ``rank-then-aggregate``, ``test-then-rank``, or ``all``.
    bootstrap
        Number of bootstrap samples (0 for none); ignored when ``draws`` is given.
    seed
        Seed of the bootstrap draws.
    alpha, adjust
        Significance level and p-value adjustment (holm, bonferroni, hochberg, BH, BY, none).
    mode
        ``statistical`` or ``challenger`` (challengeR 1.0.5's bootstrap; docs/ranking.md).
    smaller_better
        Tasks where a smaller value is better.
    draws
        Explicit bootstrap draws (``b, task, pos, case``) to replay.
    progress
        Show a progress bar during the bootstrap.
    ties
        R's ties method for every rank: ``min`` (challengeR's default), ``max``, ``average``,
        ``first`` or ``last``.
    missing
        ``na.rm`` leaves missing results out (an algorithm without any result in a task leaves
        that task, except in rank-then-aggregate, where missing values rank worst); ``error``
        refuses a table with missing results (challengeR without ``na.treat``). Fill them
        first with :func:`fill_missing` to count them instead.

    Raises
    ------
    RankingInputError
        Unusable table, draws or settings (one-line message).
    """
    parsed = _check_settings(methods, bootstrap, alpha, adjust, mode, ties, missing)
    options = Options(alpha=alpha, adjust=adjust, mode=mode, ties=ties)
    tasks, notes = build_tasks(validate_table(table), smaller_better, missing)
    rankings, pairwise = _full_data(parsed, tasks, options)
    full_ranks = {
        (str(m), str(t)): g["rank"].to_numpy(dtype=np.float64)
        for (m, t), g in rankings.groupby(["method", "task"], sort=False)
    }
    boot_tasks = _bootstrap_tasks(tasks, bootstrap if draws is None else 1, notes)
    if draws is not None:
        sample_draws = draws_from_frame(draws, boot_tasks)
    else:
        sample_draws = make_draws(boot_tasks, bootstrap, seed) if bootstrap else {}
    ranks = pd.DataFrame(columns=["method", "task", "algorithm", "b", "rank"])
    kendall = pd.DataFrame(columns=["method", "task", "b", "tau"])
    summary = pd.DataFrame()
    kendall_summary = pd.DataFrame()
    boot_consensus = pd.DataFrame()
    cons = consensus(rankings, "euclidean")
    if sample_draws:
        n_samples = next(iter(sample_draws.values())).shape[0]
        with _progress(progress, n_samples * len(parsed) * len(boot_tasks)) as advance:
            boot = run_bootstrap(parsed, boot_tasks, sample_draws, options, full_ranks, advance)
        ranks, kendall = boot.ranks, boot.kendall
        summary = summarize_ranks(ranks, rankings)
        kendall_summary = summarize_kendall(kendall)
        boot_consensus = summarize_consensus(ranks, cons)
    return RankingResult(
        rankings=rankings,
        pairwise=pairwise,
        consensus=cons,
        bootstrap_ranks=ranks,
        bootstrap_summary=summary,
        kendall=kendall,
        kendall_summary=kendall_summary,
        consensus_all=pd.concat(
            [consensus(rankings, how).assign(consensus=how) for how in CONSENSUS],
            ignore_index=True,
        ),
        draws=draws_to_frame(sample_draws, boot_tasks) if sample_draws else pd.DataFrame(),
        tasks=tasks,
        settings={
            "methods": [m.name for m in parsed],
            "bootstrap": len(next(iter(sample_draws.values()))) if sample_draws else 0,
            "seed": seed if draws is None else None,
            "alpha": alpha,
            "adjust": adjust,
            "mode": mode,
            "ties": ties,
            "missing": missing,
            "smaller_better": sorted(set(smaller_better)),
            "bootstrapped_tasks": [t.name for t in boot_tasks] if sample_draws else [],
        },
        bootstrap_consensus=boot_consensus,
        notes=notes,
    )


def _bootstrap_tasks(tasks: Sequence[Task], bootstrap: int, notes: list[str]) -> list[Task]:
    """The tasks to bootstrap: those with more than one case (challengeR refuses one case)."""
    if not bootstrap:
        return list(tasks)
    kept = [t for t in tasks if len(t.cases) > 1]
    if not kept:
        what = "the task has" if len(tasks) == 1 else "every task has"
        raise RankingInputError(
            f"{what} only 1 case: bootstrapping one case is not sensible (use --bootstrap 0)"
        )
    if len(kept) < len(tasks):
        left = ", ".join(t.name for t in tasks if len(t.cases) <= 1)
        notes.append(f"task(s) {left} with only 1 case left out of the bootstrap")
    return kept


def _check_settings(
    methods: Iterable[str],
    bootstrap: int,
    alpha: float,
    adjust: str,
    mode: str,
    ties: str,
    missing: str,
) -> list[Method]:
    try:
        parsed = parse_methods([methods] if isinstance(methods, str) else methods)
    except ValueError as e:
        raise RankingInputError(str(e)) from e
    if not 0 < alpha < 1:
        raise RankingInputError(f"alpha must be between 0 and 1, not {alpha}")
    if adjust not in (*stats.ADJUSTMENTS, "fdr"):
        raise RankingInputError(
            f"unknown adjustment {adjust!r} (use {', '.join(stats.ADJUSTMENTS)})"
        )
    if mode not in MODES:
        raise RankingInputError(f"unknown mode {mode!r} (use {', '.join(MODES)})")
    if bootstrap < 0:
        raise RankingInputError("the number of bootstrap samples cannot be negative")
    if ties not in stats.TIES:
        raise RankingInputError(f"unknown ties method {ties!r} (use {', '.join(stats.TIES)})")
    if ties in ("first", "last") and mode == "challenger" and bootstrap:
        raise RankingInputError(
            f"ties {ties!r} is not defined for challenger mode's grouped copies (use min, max "
            "or average)"
        )
    if missing not in MISSING:
        raise RankingInputError(f"unknown missing-value treatment {missing!r} (use na.rm, error)")
    return parsed


def _full_data(
    methods: Sequence[Method], tasks: Sequence[Task], options: Options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rankings of every method on the full data, and the pairwise tests of every task."""
    rankings, pairwise = [], []
    test = Method("test-then-rank")
    with threadpool_limits(limits=1):  # tiny matrix products: threads only cost here
        tested = {
            t.name: score(test, view, full_sample(view), options, keep_pvalues=True)
            for t in tasks
            for view in [task_view(test, t)]
        }
        others = {
            (m.name, t.name): score(m, task_view(m, t), full_sample(t), options)
            for m in methods
            if m.kind != "test-then-rank"
            for t in tasks
        }
    for method in methods:
        for task in tasks:
            s = tested[task.name] if method == test else others[(method.name, task.name)]
            rankings.append(
                pd.DataFrame(
                    {
                        "method": method.name,
                        "task": task.name,
                        "algorithm": task_view(method, task).algorithms,
                        "value": s.value[0],
                        "rank": s.rank[0].astype(int),
                    }
                )
            )
    for task in tasks:
        s = tested[task.name]
        assert s.pvalues is not None and s.adjusted is not None and s.pairs is not None
        names = np.asarray(task_view(test, task).algorithms)
        x, y = np.nonzero(~np.eye(len(names), dtype=bool))
        adjusted = s.adjusted[0, x, y]
        pairwise.append(
            pd.DataFrame(
                {
                    "task": task.name,
                    "algorithm": names[x],
                    "other": names[y],
                    "n": s.pairs[0, x, y].astype(int),
                    "p_value": s.pvalues[0, x, y],
                    "p_adjusted": adjusted,
                    "significant": adjusted < options.alpha,
                }
            )
        )
    return pd.concat(rankings, ignore_index=True), pd.concat(pairwise, ignore_index=True)


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar over bootstrap samples, or nothing."""
    if not show:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        job = bar.add_task("bootstrap", total=total)
        yield lambda n: bar.advance(job, n)
