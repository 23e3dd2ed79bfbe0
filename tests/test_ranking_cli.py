"""``covseg rank``: outputs, report, evaluation folders and one-line errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covseg.cli import app


def _write_table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        {
            "task": task,
            "case": f"c{c}",
            "algorithm": f"A{a}",
            "value": round(0.5 + 0.1 * a + rng.normal(0, 0.05), 2),
        }
        for task in ("dice", "nsd")
        for a in range(4)
        for c in range(6)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_rank_long_csv_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "rank",
            str(_write_table(tmp_path / "t.csv")),
            "-o",
            str(out),
            "--method",
            "all",
            "--bootstrap",
            "20",
            "--plots",
            "both",
        ],
    )
    assert result.exit_code == 0, result.output
    rankings = pd.read_csv(out / "rankings.csv")
    assert list(rankings.columns) == ["method", "task", "algorithm", "value", "rank"]
    assert set(rankings.method) == {"aggregate-then-rank", "rank-then-aggregate", "test-then-rank"}
    assert list(pd.read_csv(out / "consensus.csv").columns) == [
        "method",
        "algorithm",
        "value",
        "rank",
    ]
    assert list(pd.read_csv(out / "pairwise.csv").columns) == [
        "task",
        "algorithm",
        "other",
        "n",
        "p_value",
        "p_adjusted",
        "significant",
    ]
    boot = pd.read_csv(out / "bootstrap_ranks.csv")
    assert list(boot.columns) == ["method", "task", "algorithm", "b", "rank"]
    assert len(boot) == 3 * 2 * 4 * 20
    assert (out / "bootstrap_summary.csv").is_file()
    # every method gets every plot, in its own folder; the line plot compares the methods
    pngs = [p for p in (out / "plots").rglob("*.png")]
    for method in ("aggregate-then-rank", "rank-then-aggregate", "test-then-rank"):
        names = {p.name for p in (out / "plots" / method).iterdir()}
        for stem in (
            "boxplot_dice",
            "podium_nsd",
            "ranking_heatmap_dice",
            "significance_map_dice",
            "blob_nsd",
            "blob_across_tasks",
            "kendall_violin",
        ):
            assert f"{stem}.png" in names and f"{stem}.svg" in names
    assert (out / "plots" / "line_plot.png").is_file()
    assert len(pngs) == 3 * (2 * 5 + 2) + 1
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    for method in ("aggregate-then-rank", "rank-then-aggregate", "test-then-rank"):
        assert f"<h2>Plots: {method}</h2>" in html
    assert "Wilcoxon" in html and "A3" in html
    # replaying the written draws gives the same bootstrap ranks
    again = tmp_path / "again"
    result = CliRunner().invoke(
        app,
        [
            "rank",
            str(tmp_path / "t.csv"),
            "-o",
            str(again),
            "--method",
            "all",
            "--draws",
            str(out / "bootstrap_draws.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(again / "bootstrap_ranks.csv"), boot)


def test_rank_evaluation_folder(tmp_path: Path) -> None:
    for k, name in enumerate(["team_a", "team_b"]):
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        pd.DataFrame(
            {
                "case": ["A-1", "A-2", "B-1", "B-2"],
                "source": ["A", "A", "B", "B"],
                "subset": ["seen", "seen", "unseen", "unseen"],
                "dice": [0.7 + 0.1 * k, 0.6 + 0.1 * k, 0.5, 0.4 + 0.1 * k],
                "nsd": [0.7, 0.6, 0.5, 0.4],
                "nave": [0.3 - 0.1 * k, 0.2, 0.3, 0.4],
                "status": "ok",
                "error": "",
            }
        ).to_csv(folder / "metrics.csv", index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "rank",
            str(tmp_path / "results"),
            "-o",
            str(out),
            "--method",
            "aggregate-then-rank",
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    r = pd.read_csv(out / "rankings.csv").set_index(["task", "algorithm"])["rank"]
    assert len(r) == 12
    assert r[("nave_seen", "team_b")] == 1  # smaller NAVE is better
    assert r[("dice_seen", "team_b")] == 1


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("task,case,value\nt,c,1\n", [], "missing column"),
        ("task,case,algorithm,value\nt,c,A,1\nt,c,A,2\nt,c,B,1\n", [], "duplicate"),
        ("task,case,algorithm,value\nt,c,A,oops\nt,c,B,1\n", [], "not a number"),
        ("task,case,algorithm,value\nt,c,A,1\nt,c,B,1\n", ["--mode", "fast"], "mode"),
        (
            "task,case,algorithm,value\nt,c,A,1\nt,c,B,1\n",
            ["--fill-missing", "lots"],
            "fill-missing",
        ),
    ],
)
def test_bad_input_one_line(tmp_path: Path, content: str, extra: list[str], message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = CliRunner().invoke(app, ["rank", str(path), "-o", str(tmp_path / "o"), *extra])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
