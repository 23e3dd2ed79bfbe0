"""``RankingResult``: what :func:`covseg.ranking.run_ranking` computes, as data frames.

Its own module so that the ranking (``run``) and its writers (``report``, ``plots``) both
import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from covseg.ranking.table import Task


@dataclass
class RankingResult:
    """All outputs of :func:`run_ranking` as data frames (column names are an interface).

    ``rankings``: method, task, algorithm, value, rank. ``pairwise``: task, algorithm, other, n,
    p_value, p_adjusted, significant. ``consensus``: method, algorithm, value, rank (Euclidean).
    ``bootstrap_ranks``: method, task, algorithm, b, rank. ``bootstrap_summary``: method, task,
    algorithm, rank, mean_rank, median_rank, q025, q975, prop_rank1, rank_freq.
    ``bootstrap_consensus``: method, algorithm, value, rank, median_rank, q025, q975 (the
    consensus of each bootstrap sample). ``notes``: one line each on missing results, left-out
    algorithms and tasks left out of the bootstrap.
    """

    rankings: pd.DataFrame
    pairwise: pd.DataFrame
    consensus: pd.DataFrame
    bootstrap_ranks: pd.DataFrame
    bootstrap_summary: pd.DataFrame
    kendall: pd.DataFrame = field(default_factory=pd.DataFrame)
    kendall_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    consensus_all: pd.DataFrame = field(default_factory=pd.DataFrame)
    draws: pd.DataFrame = field(default_factory=pd.DataFrame)
    tasks: list[Task] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
    bootstrap_consensus: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
