"""Ranking tasks from any metric column (``--tasks``), subsets, and the command's own output."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.ranking import RankingInputError, load_results, run_ranking, table_from_evaluations
from covseg.ranking.report import consensus_text, rank_interval


def _metrics(skill: float, subsets: tuple[str, ...] = ("seen", "seen", "unseen", "unseen")):
    n = len(subsets)
    return pd.DataFrame(
        {
            "case": [f"case{k}" for k in range(n)],
            "source": ["A"] * n,
            "subset": list(subsets),
            "dice": np.linspace(0.5, 0.8, n) + skill,
            "nsd": np.linspace(0.4, 0.9, n) + skill,
            "nave": np.linspace(0.3, 0.1, n) - skill / 2,
            "lesion_f1": np.linspace(0.2, 0.9, n) + skill,
            "fp_lesions": np.arange(n, dtype=float)[::-1] + (0 if skill else 1),
            "truth_ml": np.full(n, 10.0),
            "status": "ok",
            "error": "",
        }
    )


def test_tasks_from_any_metric_take_their_direction_from_the_registry() -> None:
    frames = {"good": _metrics(0.1), "poor": _metrics(0.0)}
    table, smaller = table_from_evaluations(frames, ["dice", "nave", "lesion_f1", "fp_lesions"])
    assert list(dict.fromkeys(table.task)) == [
        f"{m}_{s}" for s in ("seen", "unseen") for m in ("dice", "nave", "lesion_f1", "fp_lesions")
    ]
    assert smaller == {"nave_seen", "nave_unseen", "fp_lesions_seen", "fp_lesions_unseen"}
    result = run_ranking(
        table, methods=["aggregate-then-rank"], bootstrap=0, smaller_better=smaller
    )
    # "good" is better on every metric, whichever its direction
    assert (result.rankings.set_index("algorithm").loc["good", "rank"] == 1).all()


def test_cases_of_unknown_source_make_their_own_task() -> None:
    subsets = ("seen", "unseen", "unknown", "")  # an empty subset is unknown too
    frames = {"a": _metrics(0.1, subsets), "b": _metrics(0.0, subsets)}
    table, _ = table_from_evaluations(frames, ["dice"])
    assert list(dict.fromkeys(table.task)) == ["dice_seen", "dice_unseen", "dice_unknown"]
    assert set(table[table.task == "dice_unknown"].case) == {"case2", "case3"}
    assert set(table[table.task == "dice_unseen"].case) == {"case1"}


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["dice", "dicee"], "'dicee' is not a metric of metrics.csv"),
        (["truth_ml"], "metric truth_ml has no direction"),
        (["hd95"], r"lack column\(s\) \['hd95'\]"),
    ],
)
def test_bad_metrics(tasks: list[str], message: str) -> None:
    with pytest.raises(RankingInputError, match=message):
        table_from_evaluations({"a": _metrics(0.1)}, tasks)


def test_a_metric_without_any_value_is_refused() -> None:
    frames = {
        "a": _metrics(0.1).assign(lesion_f1=np.nan),
        "b": _metrics(0).assign(lesion_f1=np.nan),
    }
    with pytest.raises(RankingInputError, match="metric lesion_f1 has no value"):
        table_from_evaluations(frames, ["dice", "lesion_f1"])


def _folder(tmp_path: Path, n: int = 3) -> Path:
    for k in range(n):
        (tmp_path / "results" / f"team{k:02d}").mkdir(parents=True)
        _metrics(0.05 * k).to_csv(tmp_path / "results" / f"team{k:02d}" / "metrics.csv")
    return tmp_path / "results"


def test_rank_lesion_aware_tasks_and_print_the_consensus(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "rank",
            str(_folder(tmp_path)),
            "-o",
            str(out),
            "--tasks",
            "dice,nsd,nave,lesion_f1",
            "--method",
            "aggregate-then-rank",
            "--bootstrap",
            "20",
            "--plots",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    tasks = pd.read_csv(out / "rankings.csv").task.unique().tolist()
    assert tasks == [
        f"{m}_{s}" for s in ("seen", "unseen") for m in ("dice", "nsd", "nave", "lesion_f1")
    ]
    lines = result.output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Consensus ranking")))
    assert lines[start + 1].split() == ["rank", "algorithm", "mean", "rank", "95%", "interval"]
    assert lines[start + 2].split() == ["1", "team02", "1.000", "1"]  # best in all 8 tasks
    assert lines[-1] == f"report: {out / 'report.html'} (CSVs and plots beside it)"
    assert not (out / "plots").exists() or not any((out / "plots").iterdir())


def test_long_consensus_lists_are_cut_after_20() -> None:
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        [
            {"task": "t", "case": f"c{c}", "algorithm": f"A{a:02d}", "value": rng.uniform()}
            for a in range(25)
            for c in range(4)
        ]
    )
    text = consensus_text(run_ranking(table, methods=["aggregate-then-rank"], bootstrap=0))
    lines = text.splitlines()
    assert len(lines) == 2 + 20 + 1 and lines[-1] == "... 5 more"
    assert "interval" not in lines[1]  # nothing bootstrapped, no interval column


@pytest.mark.parametrize(
    ("low", "high", "shown"), [(1.0, 3.0, "1–3"), (1.5, 3.025, "1–4"), (2.0, 2.0, "2")]
)
def test_rank_intervals_are_widened_to_whole_ranks(low: float, high: float, shown: str) -> None:
    assert rank_interval(low, high) == shown


def test_long_csv_tasks_select_and_unknown_task_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame(
        {"task": ["a", "a", "b", "b"], "case": "c", "algorithm": ["X", "Y"] * 2, "value": 1.0}
    ).to_csv(path, index=False)
    table, _ = load_results(path, ["b"])
    assert set(table.task) == {"b"}
    with pytest.raises(RankingInputError, match="task z is not in the table"):
        load_results(path, ["b", "z"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "dice,nope"], "'nope' is not a metric of metrics.csv"),
        (["--tasks", "dice,pred_lesions"], "metric pred_lesions has no direction"),
        (["--tasks", "dice,hd95"], "lack column"),
        (["--ties", "random"], "unknown ties method 'random'"),
        (["--missing", "skip"], "unknown missing-value treatment 'skip'"),
        (["--plots", "jpg"], "--plots: 'jpg'"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app,
        ["rank", str(_folder(tmp_path, 2)), "-o", str(tmp_path / "o"), "--bootstrap", "0", *extra],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_all_nan_column_and_missing_without_treatment_exit_2(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 2)
    for k in range(2):
        path = folder / f"team{k:02d}" / "metrics.csv"
        frame = pd.read_csv(path).assign(lesion_f1=np.nan)
        frame.loc[0, "dice"] = np.nan
        frame.to_csv(path, index=False)
    runner = CliRunner()
    base = ["rank", str(folder), "-o", str(tmp_path / "o"), "--bootstrap", "0"]
    result = runner.invoke(app, [*base, "--tasks", "dice,lesion_f1"])
    assert result.exit_code == 2 and "metric lesion_f1 has no value (all NaN)" in result.output
    result = runner.invoke(app, [*base, "--missing", "error"])
    assert result.exit_code == 2 and "task dice_seen: 2 missing result(s)" in result.output
    result = runner.invoke(app, [*base, "--plots", "none"])
    assert result.exit_code == 0
    assert "note: task dice_seen: 2 missing result(s) left out (na.rm)" in result.output
