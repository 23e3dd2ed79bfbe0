"""Consensus rankings across tasks.

- ``euclidean`` (challengeR's ``consensus(method="euclidean")``): each task's ranking is turned
  into average ranks (algorithms tied at rank 3 for two places both get 3.5), the mean over
  tasks is the value, smaller is better;
- ``mean-rank``: the mean of the tasks' ranks as they are (ties "min");
- ``borda``: the number of (task, algorithm) pairs an algorithm is strictly ranked above, larger
  is better.

The consensus is ranked with ties "min".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from covseg.ranking import stats

CONSENSUS = ("euclidean", "mean-rank", "borda")


def consensus(rankings: pd.DataFrame, how: str = "euclidean") -> pd.DataFrame:
    """Consensus of the per-task ranks in ``rankings`` (columns method, task, algorithm, rank).

    Returns
    -------
    pandas.DataFrame
        ``method, algorithm, value, rank`` per ranking method, best first.
    """
    if how not in CONSENSUS:
        raise ValueError(f"unknown consensus {how!r} (use {', '.join(CONSENSUS)})")
    parts = []
    for method, group in rankings.groupby("method", sort=False):
        wide = group.pivot(index="algorithm", columns="task", values="rank")
        ranks = wide.to_numpy(dtype=np.float64).T  # [task, algorithm]
        if how == "euclidean":
            value = stats.mean(stats.rank_average(ranks, larger_better=False).T)
            rank = stats.rank_min(value, larger_better=False)
        elif how == "mean-rank":
            value = stats.mean(ranks.T)
            rank = stats.rank_min(value, larger_better=False)
        else:
            worse = (ranks[:, None, :] > ranks[:, :, None]).sum(axis=(0, 2))
            value = worse.astype(np.float64)
            rank = stats.rank_min(value)
        frame = pd.DataFrame(
            {"method": method, "algorithm": wide.index, "value": value, "rank": rank.astype(int)}
        )
        parts.append(frame.sort_values(["rank", "algorithm"], kind="stable"))
    return pd.concat(parts, ignore_index=True)
