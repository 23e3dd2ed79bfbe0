"""Hand-derived cases and properties of covseg.ranking's methods, test, bootstrap and input."""

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from covseg.ranking import (
    RankingInputError,
    fill_missing,
    run_ranking,
    stats,
    table_from_evaluations,
)
from covseg.ranking.bootstrap import summarize_ranks
from covseg.ranking.methods import Method, Options, score
from covseg.ranking.table import Task
from covseg.ranking.wilcoxon import signed_rank_pvalues

ALL = ["aggregate-then-rank", "rank-then-aggregate", "test-then-rank"]


def long_table(values: dict[str, list[float]], task: str = "t") -> pd.DataFrame:
    """A one-task long table from ``{algorithm: values per case}``."""
    return pd.DataFrame(
        [
            {"task": task, "case": f"c{i:02d}", "algorithm": a, "value": v}
            for a, vs in values.items()
            for i, v in enumerate(vs)
        ]
    )


def ranks(result, method: str) -> dict[str, int]:
    rows = result.rankings[result.rankings.method == method]
    return dict(zip(rows.algorithm, rows["rank"], strict=True))


def test_dominating_algorithm_hand_derived_p_value() -> None:
    # A beats B on 10 cases by distinct margins: V = 1 + ... + 10 = 55, n = 10,
    # z = (55 - 27.5 - 0.5) / sqrt(10 * 11 * 21 / 24), p = upper normal tail of z
    b = [0.5] * 10
    a = [0.5 + 0.01 * (k + 1) for k in range(10)]
    result = run_ranking(long_table({"A": a, "B": b, "C": b}), methods=ALL, bootstrap=0)
    for method in ALL:
        assert ranks(result, method)["A"] == 1
    z = 27.0 / math.sqrt(10 * 11 * 21 / 24)
    expected = 0.5 * math.erfc(z / math.sqrt(2))
    pw = result.pairwise.set_index(["algorithm", "other"])
    assert pw.loc[("A", "B"), "p_value"] == pytest.approx(expected, rel=1e-12)
    # reverse direction: V = 0, z = (0 - 27.5 - 0.5) / sigma
    reverse = 0.5 * math.erfc(-(28 / 27) * z / math.sqrt(2))
    assert pw.loc[("B", "A"), "p_value"] == pytest.approx(reverse, rel=1e-12)
    # B vs C: every difference is zero, so n = 0 and p = 1
    assert pw.loc[("B", "C"), "p_value"] == 1.0
    assert pw.loc[("A", "B"), "significant"]  # p = 0.003, Holm over 6 pairs = 0.018
    ttr = result.rankings[result.rankings.method == "test-then-rank"].set_index("algorithm")
    assert ttr.loc["A", "value"] == 1.0 and ttr.loc["B", "value"] == 0.0
    assert ranks(result, "test-then-rank") == {"A": 1, "B": 2, "C": 2}


def test_reverse_pair_statistic_is_the_complement() -> None:
    # V(y > x) = n(n+1)/2 - V(x > y): with z' = (n(n+1)/4 - V - 0.5) / sigma
    x = np.array([[0.9, 0.8, 0.7, 0.6, 0.65], [0.85, 0.82, 0.6, 0.6, 0.7]])
    p, n = signed_rank_pvalues(x)
    expected = scipy_stats.wilcoxon(
        x[1], x[0], alternative="greater", method="approx", correction=True
    ).pvalue
    assert p[0, 1, 0] == pytest.approx(expected, rel=1e-12)
    assert n[0, 0, 1] == 5


def test_wilcoxon_matches_scipy_with_ties_and_zeros() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.uniform(0.4, 0.9, (6, 15)), 1)  # coarse values: ties and zero differences
    p, _ = signed_rank_pvalues(x)
    for i in range(6):
        for j in range(6):
            if i == j or np.all(x[i] == x[j]):
                continue
            expected = scipy_stats.wilcoxon(
                x[i], x[j], alternative="greater", method="approx", correction=True
            ).pvalue
            assert p[0, i, j] == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_weighted_samples_equal_expanded_samples() -> None:
    """The quadratic-form statistic of weights equals the test on the duplicated cases."""
    rng = np.random.default_rng(5)
    x = np.round(rng.uniform(0.3, 0.9, (5, 12)), 1)
    x[2, 3] = np.nan  # a missing result
    draws = rng.integers(0, 12, (8, 12))
    counts = np.stack([np.bincount(d, minlength=12) for d in draws]).astype(float)
    p, n = signed_rank_pvalues(x, counts)
    for b, d in enumerate(draws):
        p_exp, n_exp = signed_rank_pvalues(x[:, d])
        np.testing.assert_allclose(p[b], p_exp[0], rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(n[b], n_exp[0])


def test_all_ties_every_algorithm_first() -> None:
    result = run_ranking(
        long_table({"A": [0.7] * 5, "B": [0.7] * 5, "C": [0.7] * 5}), methods=ALL, bootstrap=20
    )
    for method in ALL:
        assert set(ranks(result, method).values()) == {1}
    assert (result.pairwise.p_value == 1).all()
    assert (result.consensus["rank"] == 1).all()
    assert result.kendall.tau.isna().all()  # every bootstrap ranking is constant


def test_one_case() -> None:
    result = run_ranking(long_table({"A": [0.9], "B": [0.5], "C": [0.7]}), methods=ALL, bootstrap=0)
    assert ranks(result, "aggregate-then-rank") == {"A": 1, "C": 2, "B": 3}
    assert ranks(result, "rank-then-aggregate") == {"A": 1, "C": 2, "B": 3}
    # one difference, n = 1, sigma = 0.5: the better one has V = 1, z = (1 - 0.5 - 0.5) / 0.5
    # = 0, p = 0.5; the worse one V = 0, z = -2, p = 0.977: nothing significant
    pw = result.pairwise.set_index(["algorithm", "other"])["p_value"]
    assert pw[("A", "B")] == 0.5 and pw[("C", "B")] == 0.5
    assert pw[("B", "A")] == pytest.approx(0.5 * math.erfc(-2 / math.sqrt(2)), rel=1e-14)
    assert set(ranks(result, "test-then-rank").values()) == {1}


def test_algorithm_missing_cases_dropped() -> None:
    table = long_table({"A": [0.9, 0.8, 0.1, 0.7], "B": [0.6, 0.6, 0.6, 0.6]})
    table = table[~((table.algorithm == "A") & (table.case == "c02"))]  # A's worst case absent
    result = run_ranking(table, methods=ALL, bootstrap=0)
    atr = result.rankings[result.rankings.method == "aggregate-then-rank"].set_index("algorithm")
    assert atr.loc["A", "value"] == pytest.approx(0.8)
    assert ranks(result, "aggregate-then-rank") == {"A": 1, "B": 2}
    assert (result.pairwise.n == 3).all()
    filled = run_ranking(fill_missing(table, "worst"), methods=ALL, bootstrap=0)
    atr = filled.rankings[filled.rankings.method == "aggregate-then-rank"].set_index("algorithm")
    assert atr.loc["A", "value"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.7) / 4)  # worst = 0.6


def test_sample_without_any_result_ranks_last() -> None:
    values = {"A": [0.9, 0.8, 0.7, 0.6, 0.5], "B": [0.95, np.nan, np.nan, np.nan, np.nan]}
    values["C"] = [0.1] * 5
    result = run_ranking(long_table(values), methods=ALL[:2], bootstrap=60, seed=1)
    boot = result.bootstrap_ranks
    assert boot["rank"].between(1, 3).all()
    # samples that never draw c00 leave B without results: B is then last
    no_b = boot[(boot.algorithm == "B") & (boot["rank"] == 3)]
    assert len(no_b) > 0


def test_equal_values_stay_equal_after_mean() -> None:
    # left to right, 0.1 + 0.2 + 0.3 = 0.6000000000000001 but 0.3 + 0.2 + 0.1 = 0.6
    table = long_table({"A": [0.1, 0.2, 0.3], "B": [0.3, 0.2, 0.1], "C": [0.2, 0.2, 0.1]})
    result = run_ranking(table, methods=["aggregate-then-rank"], bootstrap=0)
    assert ranks(result, "aggregate-then-rank") == {"A": 1, "B": 1, "C": 3}


def test_mean_is_correctly_rounded() -> None:
    rng = np.random.default_rng(7)
    x = np.round(rng.uniform(0, 1, (200, 23)), 2) * rng.choice([1.0, 1e-3, 1e3], (200, 23))
    exact = [float(sum(map(Fraction, row)) / len(row)) for row in x]
    np.testing.assert_array_equal(stats.mean(x), exact)
    np.testing.assert_array_equal(stats.mean(x[:, ::-1]), exact)


def test_adjustments_match_their_definitions() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.02, 0.5])
    # Holm: sorted 0.01..0.04, 0.5 times 5, 4, 3, 2, 1 = 0.05, 0.08, 0.09, 0.08, 0.5, running max
    np.testing.assert_allclose(stats.adjust_pvalues(p, "holm"), [0.05, 0.09, 0.09, 0.08, 0.5])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "bonferroni"), [0.05, 0.2, 0.15, 0.1, 1])
    np.testing.assert_allclose(stats.adjust_pvalues(p, "BH"), [0.05, 0.05, 0.05, 0.05, 0.5])
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 0.02, (50, 30)).round(4)  # with tied p-values
    for alpha in (0.05, 0.2):
        expected = stats.adjust_pvalues(many, "holm") < alpha
        np.testing.assert_array_equal(stats.reject(many, "holm", alpha), expected)


def test_invariant_to_row_order_and_algorithm_names() -> None:
    rng = np.random.default_rng(1)
    values = {f"A{k}": list(np.round(rng.uniform(0.5, 0.9, 12) + 0.02 * k, 2)) for k in range(6)}
    table = pd.concat(
        [long_table(values, "t1"), long_table(values, "t2").assign(value=lambda d: -d.value)]
    )
    base = run_ranking(table, methods=ALL, bootstrap=50, seed=4, smaller_better=["t2"])
    shuffled = table.sample(frac=1, random_state=2)
    rename = {f"A{k}": f"z{5 - k}" for k in range(6)}  # reverses the alphabetical order
    shuffled = shuffled.assign(algorithm=shuffled.algorithm.map(rename))
    other = run_ranking(shuffled, methods=ALL, bootstrap=50, seed=4, smaller_better=["t2"])
    a = base.rankings.assign(algorithm=base.rankings.algorithm.map(rename))
    key = ["method", "task", "algorithm"]
    a, b = (
        a.sort_values(key).reset_index(drop=True),
        other.rankings.sort_values(key).reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(a, b)
    s1 = base.bootstrap_summary.assign(algorithm=base.bootstrap_summary.algorithm.map(rename))
    s1 = s1.sort_values(key).reset_index(drop=True)
    s2 = other.bootstrap_summary.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(s1, s2)
    # the smaller-is-better task of negated values ranks like the first task
    r = base.rankings
    assert (r[r.task == "t1"]["rank"].to_numpy() == r[r.task == "t2"]["rank"].to_numpy()).all()


def test_statistical_rank_then_aggregate_ranks_copies_separately() -> None:
    x = np.array([[0.9, 0.5, 0.7], [0.8, 0.6, 0.7], [0.1, 0.9, 0.2]])
    task = Task("t", ("A", "B", "C"), ("c0", "c1", "c2"), x, 1.0)
    draws = np.array([[0, 0, 1]])  # case c0 twice
    method = Method.parse("rank-then-aggregate")
    stat = score(method, task, draws, Options(mode="statistical")).value[0]
    chal = score(method, task, draws, Options(mode="challenger")).value[0]
    # per-case ranks: c0 A1 B2 C3; c1 C1 B2 A3
    np.testing.assert_allclose(stat, [(1 + 1 + 3) / 3, (2 + 2 + 2) / 3, (3 + 3 + 1) / 3])
    # challengeR ranks c0's two copies together: ranks 1,1 / 3,3 / 5,5
    np.testing.assert_allclose(chal, [(1 + 1 + 3) / 3, (3 + 3 + 2) / 3, (5 + 5 + 1) / 3])


def test_seeded_bootstrap_is_reproducible_and_replayable() -> None:
    table = long_table(
        {"A": [0.9, 0.8, 0.7, 0.75], "B": [0.6, 0.85, 0.5, 0.7], "C": [0.2, 0.3, 0.9, 0.1]}
    )
    one = run_ranking(table, methods=ALL, bootstrap=30, seed=9)
    two = run_ranking(table, methods=ALL, bootstrap=30, seed=9)
    replay = run_ranking(table, methods=ALL, draws=one.draws)
    pd.testing.assert_frame_equal(one.bootstrap_ranks, two.bootstrap_ranks)
    pd.testing.assert_frame_equal(one.bootstrap_ranks, replay.bootstrap_ranks)
    assert set(one.bootstrap_ranks.b) == set(range(1, 31))
    summary = one.bootstrap_summary
    assert ((summary.q025 <= summary.median_rank) & (summary.median_rank <= summary.q975)).all()


def test_borda_and_mean_rank_consensus() -> None:
    table = pd.concat(
        [
            long_table({"A": [3, 3], "B": [2, 2], "C": [1, 1]}, "t1"),
            long_table({"A": [1, 1], "B": [3, 3], "C": [2, 2]}, "t2"),
        ]
    )
    result = run_ranking(table, methods=["aggregate-then-rank"], bootstrap=0)
    c = result.consensus_all.set_index(["consensus", "algorithm"])
    # ranks: A 1,3  B 2,1  C 3,2
    assert c.loc[("mean-rank", "A"), "value"] == 2 and c.loc[("mean-rank", "B"), "value"] == 1.5
    assert c.loc[("borda", "A"), "value"] == 2 and c.loc[("borda", "B"), "value"] == 3
    assert c.loc[("borda", "B"), "rank"] == 1


def test_table_from_evaluations_builds_six_tasks() -> None:
    def metrics(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "case": ["a1", "a2", "b1", "b2"],
                "subset": ["seen", "seen", "unseen", "unseen"],
                "dice": [0.8 + shift, 0.7 + shift, 0.6 + shift, np.nan],
                "nsd": [0.7, 0.6, 0.5, 0.4],
                "nave": [0.1 - shift, 0.2, 0.3, 0.4],
                "status": ["ok", "ok", "ok", "failed"],
            }
        )

    table, smaller = table_from_evaluations({"good": metrics(0.1), "bad": metrics(0.0)})
    assert list(dict.fromkeys(table.task)) == [
        "dice_seen",
        "nsd_seen",
        "nave_seen",
        "dice_unseen",
        "nsd_unseen",
        "nave_unseen",
    ]
    assert smaller == {"nave_seen", "nave_unseen"}
    assert table.value.isna().sum() == 2  # the failed case stays missing
    result = run_ranking(
        table, methods=["aggregate-then-rank"], bootstrap=0, smaller_better=smaller
    )
    r = result.rankings.set_index(["task", "algorithm"])["rank"]
    assert r[("nave_seen", "good")] == 1 and r[("dice_seen", "good")] == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"task": ["t"], "case": ["c"], "value": [1.0]}), "missing column"),
        (long_table({"A": [0.1, "x"], "B": [0.2, 0.3]}), "not a number"),
        (pd.concat([long_table({"A": [0.1], "B": [0.2]})] * 2), "duplicate rows"),
        (long_table({"A": [np.nan, np.nan]}), "no algorithm has a result"),
        (long_table({"A": [0.1, 0.2], "B": [0.3, float("inf")]}), "infinite"),
    ],
)
def test_bad_tables(table: pd.DataFrame, message: str) -> None:
    with pytest.raises(RankingInputError, match=message):
        run_ranking(table, bootstrap=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["sort"]}, "unknown method"),
        ({"alpha": 1.5}, "alpha"),
        ({"adjust": "magic"}, "adjustment"),
        ({"mode": "fast"}, "mode"),
        ({"smaller_better": ["nope"]}, "not in the table"),
        ({"draws": pd.DataFrame({"b": [1], "task": ["t"], "pos": [1], "case": ["zz"]})}, "zz"),
        (
            {"draws": pd.DataFrame({"b": [1], "task": ["t"], "pos": [1], "case": ["c00"]})},
            "must draw",
        ),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    table = long_table({"A": [0.1, 0.2], "B": [0.3, 0.4]})
    with pytest.raises(RankingInputError, match=message):
        run_ranking(table, bootstrap=0, **kwargs)


def test_bootstrap_summary_equals_numpy_per_group() -> None:
    # the summary is computed from rank counts; it must equal numpy's statistics of each group
    rng = np.random.default_rng(3)
    ranks = pd.DataFrame(
        {
            "method": "m",
            "task": np.repeat(["t1", "t2"], 4 * 999),
            "algorithm": np.tile(np.repeat(["A", "B", "C", "D"], 999), 2),
            "b": np.tile(np.arange(1, 1000), 8),
            "rank": rng.integers(1, 5, 8 * 999),
        }
    )
    full = ranks.groupby(["method", "task", "algorithm"], as_index=False)["rank"].min()
    summary = summarize_ranks(ranks, full).set_index(["task", "algorithm"])
    for (task, algorithm), group in ranks.groupby(["task", "algorithm"]):
        r = group["rank"].to_numpy()
        row = summary.loc[(task, algorithm)]
        assert row.mean_rank == r.mean() and row.median_rank == np.median(r)
        assert row.q025 == np.quantile(r, 0.025) and row.q975 == np.quantile(r, 0.975)
        assert row.prop_rank1 == np.mean(r == 1)
        values, counts = np.unique(r, return_counts=True)
        assert row.rank_freq == ";".join(f"{v}:{c}" for v, c in zip(values, counts, strict=True))
