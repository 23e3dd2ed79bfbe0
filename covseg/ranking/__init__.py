"""Statistical ranking of challenge results, identical to challengeR and much faster.

Entry points: :func:`run_ranking` on a long table (``task, case, algorithm, value``) and
:func:`table_from_evaluations` to build COVID-19-20's six tasks from ``covseg evaluate`` output.
``covseg.ranking.report.write_outputs`` writes a result's CSVs, plots and report. Methods,
conventions and the two bootstrap modes are described in ``docs/ranking.md``.
"""

from covseg.ranking.result import RankingResult
from covseg.ranking.run import run_ranking
from covseg.ranking.table import (
    SMALLER_IS_BETTER,
    RankingInputError,
    fill_missing,
    load_results,
    table_from_evaluations,
)

__all__ = [
    "SMALLER_IS_BETTER",
    "RankingInputError",
    "RankingResult",
    "fill_missing",
    "load_results",
    "run_ranking",
    "table_from_evaluations",
]
