"""challengeR 1.0.5's own unit tests (tests/testthat), as covseg tests.

Each test names the testthat file and case it comes from. The data and expected ranks are
challengeR's; the calls are covseg's equivalents:

- ``as.challenge(..., smallBetter=TRUE)``: ``smaller_better=[task]``;
- ``na.treat = "na.rm"``: ``missing="na.rm"`` (covseg's default); no ``na.treat`` with missing
  values: ``missing="error"``; ``na.treat = <number>`` or a function returning a constant:
  :func:`fill_missing` with that number first;
- ``testThenRank()``: challengeR's default adjustment there is none (``p.adjust.method="none"``),
  so ``adjust="none"``.

``subset(ranking, top=k)`` (test-subset.R) has no covseg counterpart and is not translated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from covseg.ranking import RankingInputError, fill_missing, run_ranking

NA = np.nan
ATR, RTA, TTR = "aggregate-then-rank", "rank-then-aggregate", "test-then-rank"


def challenge(*rows: tuple[str, float, str], task: str = "T1") -> pd.DataFrame:
    """A long table from challengeR's ``data.frame(algo=..., value=..., case=...)`` rows."""
    return pd.DataFrame([{"task": task, "case": c, "algorithm": a, "value": v} for a, v, c in rows])


def rank(table: pd.DataFrame, method: str, task: str = "T1", **kwargs: object) -> dict:
    """``{algorithm: (value, rank)}`` of one task, as challengeR's ``ranking$matlist$T1``."""
    kwargs.setdefault("bootstrap", 0)
    result = run_ranking(table, methods=[method], **kwargs)  # type: ignore[arg-type]
    rows = result.rankings[result.rankings.task == task]
    return {a: (v, r) for a, v, r in zip(rows.algorithm, rows.value, rows["rank"], strict=True)}


TWO = challenge(("A1", 0.6, "C1"), ("A2", 0.8, "C1"))
TWO_REVERSED = challenge(("A2", 0.8, "C1"), ("A1", 0.6, "C1"))
TIED = challenge(("A1", 0.6, "C1"), ("A2", 0.6, "C1"))
TWO_CASES = challenge(("A1", 0.6, "C1"), ("A1", 0.4, "C2"), ("A2", 0.8, "C1"), ("A2", 1.0, "C2"))
ONE = challenge(("A1", 0.6, "C1"))
NA_FIRST = challenge(("A1", NA, "C1"), ("A2", 0.8, "C1"))
MULTI = pd.concat(
    [
        challenge(("A1", 0.6, "C1"), ("A2", 0.8, "C1"), task="T1"),
        challenge(("A1", 0.5, "C1"), ("A2", 0.4, "C1"), task="T2"),
    ]
)
MULTI_NA = pd.concat(
    [
        challenge(("A1", 0.6, "C1"), ("A2", 0.8, "C1"), task="T1"),
        challenge(("A1", NA, "C1"), ("A2", 0.4, "C1"), task="T2"),
    ]
)


# --- test-aggregateThenRank.R -----------------------------------------------------------------


@pytest.mark.parametrize("table", [TWO, TWO_REVERSED])
def test_atr_two_algorithms_one_case_small_better(table: pd.DataFrame) -> None:
    assert rank(table, ATR, smaller_better=["T1"]) == {"A1": (0.6, 1), "A2": (0.8, 2)}


@pytest.mark.parametrize("table", [TWO, TWO_REVERSED])
def test_atr_two_algorithms_one_case_large_better(table: pd.DataFrame) -> None:
    assert rank(table, ATR) == {"A1": (0.6, 2), "A2": (0.8, 1)}


@pytest.mark.parametrize(("ties", "expected"), [("min", 1), ("max", 2)])
def test_atr_ties_methods(ties: str, expected: int) -> None:
    ranked = rank(TIED, ATR, smaller_better=["T1"], ties=ties)
    assert ranked == {"A1": (0.6, expected), "A2": (0.6, expected)}


@pytest.mark.parametrize("table", [TIED, TWO])  # refused even when nothing is tied
def test_atr_invalid_ties_method(table: pd.DataFrame) -> None:
    with pytest.raises(RankingInputError, match="unknown ties method 'maxx'"):
        rank(table, ATR, ties="maxx")


@pytest.mark.parametrize(("method", "value"), [(ATR, "mean"), ("aggregate-then-rank:median", "")])
def test_atr_two_algorithms_two_cases(method: str, value: str) -> None:
    ranked = rank(TWO_CASES, method, smaller_better=["T1"])
    assert ranked == {"A1": (pytest.approx(0.5), 1), "A2": (pytest.approx(0.9), 2)}


@pytest.mark.parametrize("method", [ATR, RTA, TTR])
def test_one_algorithm_one_case_is_ranked_first(method: str) -> None:
    # test-aggregateThenRank.R, test-rankThenAggregate.R, test-testThenRank.R ("one algorithm")
    assert rank(ONE, method, smaller_better=["T1"])["A1"][1] == 1


@pytest.mark.parametrize("method", [ATR, TTR])
def test_missing_values_without_treatment_are_refused(method: str) -> None:
    with pytest.raises(RankingInputError, match="task T1: 1 missing result.*A1 on case C1"):
        rank(NA_FIRST, method, missing="error")


def test_invalid_missing_treatment() -> None:
    with pytest.raises(RankingInputError, match="unknown missing-value treatment 'na.rmx'"):
        rank(NA_FIRST, ATR, missing="na.rmx")


def test_atr_treatment_without_missing_values_changes_nothing() -> None:
    assert rank(fill_missing(TWO, 0), ATR) == {"A1": (0.6, 2), "A2": (0.8, 1)}


@pytest.mark.parametrize("fill", [0.0, -1.0])  # a number, or challengeR's function(x) -1
def test_atr_missing_values_replaced(fill: float) -> None:
    assert rank(fill_missing(NA_FIRST, fill), ATR) == {"A1": (fill, 2), "A2": (0.8, 1)}


def test_atr_missing_values_removed_leave_the_algorithm_out() -> None:
    assert rank(NA_FIRST, ATR, missing="na.rm") == {"A2": (0.8, 1)}


def test_atr_multi_task() -> None:
    small = ["T1", "T2"]
    assert rank(MULTI, ATR, "T1", smaller_better=small) == {"A1": (0.6, 1), "A2": (0.8, 2)}
    assert rank(MULTI, ATR, "T2", smaller_better=small) == {"A1": (0.5, 2), "A2": (0.4, 1)}


def test_atr_multi_task_missing_replaced() -> None:
    table = fill_missing(MULTI_NA, 100)
    small = ["T1", "T2"]
    assert rank(table, ATR, "T1", smaller_better=small) == {"A1": (0.6, 1), "A2": (0.8, 2)}
    assert rank(table, ATR, "T2", smaller_better=small) == {"A1": (100.0, 2), "A2": (0.4, 1)}


def test_atr_multi_task_missing_without_treatment_refused() -> None:
    with pytest.raises(RankingInputError, match="task T2"):
        rank(MULTI_NA, ATR, "T2", missing="error")


# --- test-rankThenAggregate.R -----------------------------------------------------------------


@pytest.mark.parametrize("table", [TWO, TWO_REVERSED])
def test_rta_two_algorithms_one_case(table: pd.DataFrame) -> None:
    assert rank(table, RTA, smaller_better=["T1"]) == {"A1": (1.0, 1), "A2": (2.0, 2)}
    assert rank(table, RTA) == {"A1": (2.0, 2), "A2": (1.0, 1)}


@pytest.mark.parametrize(("ties", "expected"), [("min", 1), ("max", 2)])
def test_rta_ties_methods(ties: str, expected: int) -> None:
    # the ties method ranks within the case and the mean ranks alike
    ranked = rank(TIED, RTA, smaller_better=["T1"], ties=ties)
    assert ranked == {"A1": (expected, expected), "A2": (expected, expected)}


@pytest.mark.parametrize("method", [RTA, "rank-then-aggregate:median"])
def test_rta_two_algorithms_two_cases(method: str) -> None:
    assert rank(TWO_CASES, method, smaller_better=["T1"]) == {"A1": (1.0, 1), "A2": (2.0, 2)}


def test_rta_missing_value_gets_the_worst_rank() -> None:
    assert rank(NA_FIRST, RTA) == {"A1": (2.0, 2), "A2": (1.0, 1)}


def test_rta_multi_task_missing_value_gets_the_worst_rank() -> None:
    small = ["T1", "T2"]
    assert rank(MULTI, RTA, "T2", smaller_better=small) == {"A1": (2.0, 2), "A2": (1.0, 1)}
    assert rank(MULTI_NA, RTA, "T1", smaller_better=small) == {"A1": (1.0, 1), "A2": (2.0, 2)}
    assert rank(MULTI_NA, RTA, "T2", smaller_better=small) == {"A1": (2.0, 2), "A2": (1.0, 1)}


# --- test-testThenRank.R ----------------------------------------------------------------------

FOUR = challenge(
    *[("A1", 0.2, f"C{c}") for c in range(1, 5)], *[("A2", 1.0, f"C{c}") for c in range(1, 5)]
)
FOUR_NA = FOUR.assign(value=np.where((FOUR.algorithm == "A1") & (FOUR.case == "C1"), NA, 0.0))
FOUR_NA["value"] = FOUR_NA["value"].where(FOUR_NA["value"].isna(), FOUR["value"])
TIED_TWO_CASES = challenge(
    ("A1", 0.6, "C1"), ("A1", 0.6, "C2"), ("A2", 0.8, "C1"), ("A2", 0.8, "C2")
)


def ttr(table: pd.DataFrame, task: str = "T1", **kwargs: object) -> dict:
    return rank(table, TTR, task, adjust="none", **kwargs)


def test_ttr_one_case_ranks_everyone_first() -> None:
    assert ttr(TWO, smaller_better=["T1"]) == {"A1": (0.0, 1), "A2": (0.0, 1)}


def test_ttr_two_algorithms_four_cases() -> None:
    # four differences of 0.8, one tie group: V = 10, sigma^2 = 7.5 - (4^3 - 4)/48 = 6.25,
    # z = (10 - 5 - 0.5)/2.5 = 1.8, p = 0.036 < 0.05 for the better one
    assert ttr(FOUR, smaller_better=["T1"]) == {"A1": (1.0, 1), "A2": (0.0, 2)}
    assert ttr(FOUR) == {"A1": (0.0, 2), "A2": (1.0, 1)}


def test_ttr_ties_max() -> None:
    ranked = ttr(TIED_TWO_CASES, smaller_better=["T1"], ties="max")
    assert ranked == {"A1": (0.0, 2), "A2": (0.0, 2)}


@pytest.mark.parametrize("table", [TIED_TWO_CASES, FOUR])
def test_ttr_invalid_ties_method(table: pd.DataFrame) -> None:
    with pytest.raises(RankingInputError, match="unknown ties method"):
        ttr(table, ties="maxx")


def test_ttr_treatment_without_missing_values_changes_nothing() -> None:
    assert ttr(fill_missing(FOUR, 0), smaller_better=["T1"]) == {"A1": (1.0, 1), "A2": (0.0, 2)}


def test_ttr_missing_values() -> None:
    small = ["T1"]
    # replaced by 100 (worse than A2 on C1): not significant any more
    assert ttr(fill_missing(FOUR_NA, 100.0), smaller_better=small) == {
        "A1": (0.0, 1),
        "A2": (0.0, 1),
    }
    # replaced by 0 (by challengeR's function(x) 0.0): A1 still better everywhere
    assert ttr(fill_missing(FOUR_NA, 0.0), smaller_better=small) == {
        "A1": (1.0, 1),
        "A2": (0.0, 1 + 1),
    }
    # removed: three pairs left, p = 0.052 > 0.05
    assert ttr(FOUR_NA, smaller_better=small) == {"A1": (0.0, 1), "A2": (0.0, 1)}
    with pytest.raises(RankingInputError, match="missing result"):
        ttr(FOUR_NA, missing="error")


def test_ttr_multi_task() -> None:
    table = pd.concat([FOUR.assign(task="T1"), TIED_TWO_CASES.assign(task="T2")])
    small = ["T1", "T2"]
    assert ttr(table, "T1", smaller_better=small) == {"A1": (1.0, 1), "A2": (0.0, 2)}
    assert ttr(table, "T2", smaller_better=small) == {"A1": (0.0, 1), "A2": (0.0, 1)}
    with_na = pd.concat([FOUR_NA.assign(task="T1"), TIED_TWO_CASES.assign(task="T2")])
    filled = fill_missing(with_na, 0)
    assert ttr(filled, "T1", smaller_better=small) == {"A1": (1.0, 1), "A2": (0.0, 2)}
    with pytest.raises(RankingInputError, match="task T1"):
        ttr(with_na, "T1", missing="error")


# --- test-challenge.R -------------------------------------------------------------------------


def test_absent_results_are_missing_values_of_the_algorithms_in_the_task() -> None:
    t1 = challenge(("A1", 0.8, "C1"), ("A2", 0.6, "C2"), task="T1")
    t2 = challenge(("A1", 0.2, "C1"), ("A1", 0.3, "C2"), ("A2", 0.4, "C1"), task="T2")
    filled = fill_missing(pd.concat([t1, t2]), -1).sort_values(["task", "algorithm", "case"])
    assert filled.algorithm.tolist() == ["A1", "A1", "A2", "A2"] * 2
    assert filled.case.tolist() == ["C1", "C2"] * 4
    assert filled.value.tolist() == [0.8, -1, -1, 0.6, 0.2, 0.3, 0.4, -1]
    with pytest.raises(RankingInputError, match="task T2: 1 missing result"):
        run_ranking(pd.concat([t1, t2]).query("task == 'T2'"), bootstrap=0, missing="error")


def test_filling_does_not_add_an_algorithm_to_a_task_it_is_not_in() -> None:
    t1 = challenge(("A1", 0.8, "C1"), ("A2", 0.6, "C1"), ("A3", 0.5, "C1"), task="T1")
    t2 = challenge(("A1", 0.2, "C1"), ("A2", NA, "C1"), task="T2")
    filled = fill_missing(pd.concat([t1, t2]), "worst")
    assert sorted(filled[filled.task == "T2"].algorithm) == ["A1", "A2"]
    assert filled.loc[(filled.task == "T2") & (filled.algorithm == "A2"), "value"].item() == 0.2


@pytest.mark.parametrize(
    "rows",
    [
        [("A1", 0.8, "C1"), ("A1", 0.8, "C1")],
        [("A1", 0.8, "C1"), ("A1", 0.8, "C1"), ("A2", 0.6, "C2"), ("A2", 0.6, "C2")],
    ],
)
def test_a_case_appears_once_per_algorithm(rows: list[tuple[str, float, str]]) -> None:
    with pytest.raises(RankingInputError, match="duplicate rows for task T1, case C1"):
        run_ranking(challenge(*rows), bootstrap=0)


# --- test-bootstrap.R -------------------------------------------------------------------------


def test_bootstrap_of_a_single_task_with_one_case_is_refused() -> None:
    table = challenge(("A1", 0.8, "C1"), ("A2", 0.6, "C1"))
    with pytest.raises(RankingInputError, match="the task has only 1 case"):
        run_ranking(table, methods=["aggregate-then-rank:median"], bootstrap=10, seed=1)


def test_bootstrap_when_every_task_has_one_case_is_refused() -> None:
    table = pd.concat(
        [
            challenge(("A1", 0.8, "C1"), ("A2", 0.6, "C1"), task="T1"),
            challenge(("A1", 0.2, "C1"), ("A2", 0.3, "C1"), task="T2"),
            challenge(("A1", 0.1, "C1"), ("A2", 0.8, "C1"), task="T3"),
        ]
    )
    with pytest.raises(RankingInputError, match="every task has only 1 case"):
        run_ranking(table, methods=["aggregate-then-rank:median"], bootstrap=10, seed=1)


def test_bootstrap_leaves_one_case_tasks_out_with_a_note() -> None:
    table = pd.concat(
        [
            challenge(("A1", 0.8, "C1"), ("A2", 0.6, "C1"), task="T1"),
            challenge(
                ("A1", 0.2, "C1"),
                ("A2", 0.3, "C1"),
                ("A1", 0.2, "C2"),
                ("A2", 0.3, "C2"),
                task="T2",
            ),
            challenge(("A1", 0.1, "C1"), ("A2", 0.8, "C1"), task="T3"),
        ]
    )
    result = run_ranking(table, methods=["aggregate-then-rank:median"], bootstrap=3, seed=1)
    assert "task(s) T1, T3 with only 1 case left out of the bootstrap" in result.notes
    assert set(result.bootstrap_ranks.task) == {"T2"}
    assert set(result.rankings.task) == {"T1", "T2", "T3"}  # still ranked on the full data


def test_two_bootstraps_with_one_seed_are_equal() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        [
            {"task": t, "case": f"c{c}", "algorithm": f"A{a}", "value": rng.uniform()}
            for t in ("T1", "T2")
            for a in range(4)
            for c in range(6)
        ]
    )
    first = run_ranking(table, methods=[RTA], bootstrap=10, seed=1)
    second = run_ranking(table, methods=[RTA], bootstrap=10, seed=1)
    pd.testing.assert_frame_equal(first.bootstrap_ranks, second.bootstrap_ranks)
    pd.testing.assert_frame_equal(first.bootstrap_summary, second.bootstrap_summary)
