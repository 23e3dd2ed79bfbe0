"""The three ranking methods of challengeR, on a full data set or on many bootstrap samples.

Every method maps a task and a set of samples (rows of case indices; the full data is the
one sample ``0..C-1``) to one score and one rank per sample and algorithm:

- ``aggregate-then-rank``: aggregate (mean by default) each algorithm's values, rank them;
- ``rank-then-aggregate``: rank the algorithms within each case (a missing value gets the
  worst rank of its case, as challengeR's ``rankNA2``), average those ranks, rank the averages
  (smaller is better);
- ``test-then-rank``: one-sided paired Wilcoxon tests for all ordered pairs, p-values adjusted
  over the task's pairs; the score is the share of the other algorithms an algorithm beats
  significantly (adjusted p < alpha).

Ranks use ties "min" unless ``Options.ties`` names another of R's ties methods. A task with one
algorithm ranks it first. An algorithm without any result in a bootstrap sample (it lacks every
case drawn) is ranked after all the others there (aggregate-then-rank). Modes:
``statistical`` treats a case drawn k times as k observations; ``challenger`` reproduces
challengeR 1.0.5's bootstrap (see ``docs/ranking.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from covseg.ranking import stats
from covseg.ranking.table import Task
from covseg.ranking.wilcoxon import signed_rank_pvalues

METHODS = ("aggregate-then-rank", "rank-then-aggregate", "test-then-rank")
MODES = ("statistical", "challenger")
_AGGREGATES = ("mean", "median", "min", "max")


@dataclass(frozen=True)
class Method:
    """A ranking method: its ``kind`` (one of :data:`METHODS`) and aggregate function.

    ``name`` is how it is written in outputs: the kind, with ``:median`` etc. when the
    aggregate is not the mean.
    """

    kind: str
    aggregate: str = "mean"

    @property
    def name(self) -> str:
        return self.kind if self.aggregate == "mean" else f"{self.kind}:{self.aggregate}"

    @classmethod
    def parse(cls, spec: str) -> Method:
        """Read ``"test-then-rank"``, ``"aggregate-then-rank:median"`` and the like."""
        kind, _, aggregate = spec.partition(":")
        if kind not in METHODS:
            raise ValueError(f"unknown method {spec!r} (use {', '.join(METHODS)})")
        aggregate = aggregate or "mean"
        if aggregate not in _AGGREGATES or (kind == "test-then-rank" and aggregate != "mean"):
            raise ValueError(f"unknown aggregate in method {spec!r}")
        return cls(kind, aggregate)


@dataclass(frozen=True)
class Options:
    """Settings shared by all methods."""

    alpha: float = 0.05
    adjust: str = "holm"
    mode: str = "statistical"
    ties: str = "min"


@dataclass
class Scores:
    """Per sample and algorithm: ``value`` (in the task's own units) and ``rank``."""

    value: NDArray[np.float64]
    rank: NDArray[np.float64]
    pvalues: NDArray[np.float64] | None = None  # test-then-rank only: raw p [sample, x, y]
    adjusted: NDArray[np.float64] | None = None
    pairs: NDArray[np.float64] | None = None  # complete pairs per test


def task_view(method: Method, task: Task) -> Task:
    """The task as ``method`` ranks it: rank-then-aggregate ranks every algorithm taking part
    (missing values rank worst, as challengeR's ``rankNA2``); the others leave out algorithms
    without any result (``na.rm``)."""
    return task if method.kind == "rank-then-aggregate" else task.with_results()


def full_sample(task: Task) -> NDArray[np.intp]:
    """The full data as one "sample": every case once."""
    return np.arange(len(task.cases))[None, :]


def score(
    method: Method,
    task: Task,
    draws: NDArray[np.intp],
    options: Options,
    keep_pvalues: bool = False,
) -> Scores:
    """Scores and ranks of ``task``'s algorithms on each sample (row of case indices).

    ``keep_pvalues`` keeps test-then-rank's raw and adjusted p-values (for the full data; the
    bootstrap needs only which pairs are significant).
    """
    ties = options.ties
    if method.kind == "aggregate-then-rank":
        oriented = stats.aggregate(np.moveaxis(task.values[:, draws], 0, 1), method.aggregate)
        return Scores(task.sign * oriented, stats.rank(oriented, ties, missing_last=True))
    counts = _counts(draws, len(task.cases))
    if method.kind == "rank-then-aggregate":
        by_case = task.values.T  # [case, algorithm]: a case's ranks do not depend on the sample
        if options.mode == "challenger":
            # challengeR keeps a drawn case's id, so its k copies are ranked as one group: rank
            # every case once for each multiplicity k, then look up (case, k) per position
            k = np.take_along_axis(counts, draws, axis=1).astype(np.intp)
            ks = np.arange(1, int(k.max()) + 1, dtype=np.float64)
            grouped = np.broadcast_to(
                by_case[:, None, :], (*by_case.shape[:1], ks.size, by_case.shape[1])
            )
            table = stats.rank_missing_worst(grouped, ties, copies=ks[None, :])
            case_ranks = table[draws, k - 1]  # [sample, position, algorithm]
        else:
            case_ranks = stats.rank_missing_worst(by_case, ties)[draws]
        mean_rank = stats.aggregate(np.swapaxes(case_ranks, 1, 2), method.aggregate)
        return Scores(
            mean_rank, stats.rank(mean_rank, ties, larger_better=False, missing_last=True)
        )
    # test-then-rank; challengeR matches pairs by case id, so a repeated case counts once
    weights = (counts > 0).astype(np.float64) if options.mode == "challenger" else counts
    p, pairs = signed_rank_pvalues(task.values, weights)
    n_alg = p.shape[-1]
    off = ~np.eye(n_alg, dtype=bool)  # the family: all ordered pairs of the task
    significant = np.zeros(p.shape, dtype=bool)
    if n_alg > 1:
        significant[:, off] = stats.reject(p[:, off], options.adjust, options.alpha)
    share = significant.sum(axis=-1) / max(n_alg - 1, 1)
    result = Scores(share, stats.rank(share, ties))
    if keep_pvalues:
        result.pvalues, result.pairs = p, pairs
        result.adjusted = np.full_like(p, np.nan)
        if n_alg > 1:
            result.adjusted[:, off] = stats.adjust_pvalues(p[:, off], options.adjust)
    return result


def _counts(draws: NDArray[np.intp], n_cases: int) -> NDArray[np.float64]:
    """How often each case occurs in each sample: ``(samples, cases)``."""
    counts = np.zeros((draws.shape[0], n_cases))
    np.add.at(counts, (np.arange(draws.shape[0])[:, None], draws), 1.0)
    return counts
