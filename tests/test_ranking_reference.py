"""covseg.ranking reproduces challengeR 1.0.5's outputs (../shared/reference/challenger)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covseg.ranking import RankingResult, run_ranking

METHODS = {
    "atr": ("aggregate-then-rank", "ranking_aggregateThenRank_mean.csv", "value_mean"),
    "rta": ("rank-then-aggregate", "ranking_rankThenAggregate_mean.csv", "rank_mean"),
    "ttr": ("test-then-rank", "ranking_testThenRank_wilcoxon_holm.csv", "prop_significance"),
}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).rename(columns={"algo": "algorithm"})


@pytest.fixture(scope="module")
def replay(challenger_reference: Path) -> RankingResult:
    """All three methods, replaying challengeR's 1,000 logged draws in challenger mode."""
    table = pd.read_csv(challenger_reference / "testdata.csv")
    draws = pd.read_csv(challenger_reference / "out" / "bootstrap_draws.csv.gz")
    return run_ranking(table, methods=["all"], mode="challenger", draws=draws)


@pytest.mark.parametrize("key", METHODS)
def test_full_data_rankings(replay: RankingResult, challenger_reference: Path, key: str) -> None:
    method, file, column = METHODS[key]
    ref = _read(challenger_reference / "out" / file)
    mine = replay.rankings[replay.rankings.method == method]
    both = ref.merge(mine, on=["task", "algorithm"], suffixes=("_ref", ""))
    assert len(both) == len(ref) == 30
    np.testing.assert_allclose(both["value"], both[column], rtol=1e-13, atol=1e-13)
    assert (both["rank"] == both["rank_ref"]).all()


def test_pairwise_wilcoxon_holm(replay: RankingResult, challenger_reference: Path) -> None:
    ref = _read(challenger_reference / "out" / "testThenRank_pairwise.csv")
    ref = ref.rename(columns={"algo_x": "algorithm", "algo_y": "other"})
    both = ref.merge(replay.pairwise, on=["task", "algorithm", "other"])
    assert len(both) == len(ref) == 270 == len(replay.pairwise)
    np.testing.assert_allclose(both["p_value"], both["p_raw"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(both["p_adjusted"], both["p_holm"], rtol=0, atol=1e-10)
    assert (both["n"] == both["n_pairs"]).all()
    assert (both["significant"] == both["x_signif_better_than_y"].astype(bool)).all()
    assert both["significant"].sum() > 10  # the reference has real significant pairs


@pytest.mark.parametrize("key", METHODS)
def test_euclidean_consensus(replay: RankingResult, challenger_reference: Path, key: str) -> None:
    ref = _read(challenger_reference / "out" / f"consensus_euclidean_{key}.csv")
    mine = replay.consensus[replay.consensus.method == METHODS[key][0]]
    both = ref.merge(mine, on="algorithm")
    assert len(both) == 10
    np.testing.assert_allclose(both["value"], both["mean_rank"], rtol=1e-13)
    assert (both["rank"] == both["consensus_rank"]).all()


@pytest.mark.parametrize("key", METHODS)
def test_challenger_bootstrap_ranks_of_every_draw(
    replay: RankingResult, challenger_reference: Path, key: str
) -> None:
    ref = _read(challenger_reference / "out" / f"bootstrap_ranks_{key}.csv.gz")
    mine = replay.bootstrap_ranks[replay.bootstrap_ranks.method == METHODS[key][0]]
    both = ref.merge(mine, on=["task", "algorithm", "b"], suffixes=("_ref", ""))
    assert len(both) == len(ref) == 30_000
    assert (both["rank"] == both["rank_ref"]).all()


@pytest.mark.parametrize("key", METHODS)
def test_bootstrap_summary(replay: RankingResult, challenger_reference: Path, key: str) -> None:
    ref = _read(challenger_reference / "out" / f"bootstrap_summary_{key}.csv")
    summary = replay.bootstrap_summary
    both = ref.merge(summary[summary.method == METHODS[key][0]], on=["task", "algorithm"])
    assert len(both) == 30
    assert (both["rank"] == both["full_rank"]).all()
    for mine, theirs in [
        ("mean_rank", "boot_mean_rank"),
        ("median_rank", "boot_median_rank"),
        ("q025", "boot_q025"),
        ("q975", "boot_q975"),
        ("prop_rank1_x", "prop_rank1_y"),
    ]:
        np.testing.assert_allclose(both[mine], both[theirs], rtol=1e-12, err_msg=mine)
    assert (both["rank_freq_x"] == both["rank_freq_y"]).all()


@pytest.mark.parametrize("key", METHODS)
def test_kendall_tau(replay: RankingResult, challenger_reference: Path, key: str) -> None:
    out = challenger_reference / "out"
    ref = pd.read_csv(out / f"bootstrap_kendall_{key}.csv.gz")
    mine = replay.kendall[replay.kendall.method == METHODS[key][0]]
    both = ref.merge(mine, on=["task", "b"], suffixes=("_ref", ""))
    assert len(both) == 3000
    assert (both["tau"].isna() == both["tau_ref"].isna()).all()
    np.testing.assert_allclose(both["tau"].dropna(), both["tau_ref"].dropna(), rtol=1e-12)
    ref_summary = pd.read_csv(out / f"bootstrap_kendall_summary_{key}.csv")
    summary = replay.kendall_summary[replay.kendall_summary.method == METHODS[key][0]]
    s = ref_summary.merge(summary, on="task", suffixes=("_ref", ""))
    for column in ("mean", "median", "q25", "q75", "n_na"):
        np.testing.assert_allclose(s[column], s[f"{column}_ref"], rtol=1e-12, err_msg=column)


def test_statistical_mode_differs_from_challenger(challenger_reference: Path) -> None:
    """Same draws, statistical mode: repeated cases count k times, so some ranks change."""
    table = pd.read_csv(challenger_reference / "testdata.csv")
    draws = pd.read_csv(challenger_reference / "out" / "bootstrap_draws.csv.gz")
    draws = draws[draws.b <= 50]
    both = [
        run_ranking(table, methods=["rank-then-aggregate", "test-then-rank"], mode=m, draws=draws)
        for m in ("challenger", "statistical")
    ]
    a, b = (r.bootstrap_ranks.sort_values(["method", "task", "algorithm", "b"]) for r in both)
    changed = a["rank"].to_numpy() != b["rank"].to_numpy()
    assert changed.any()
