"""The demo's results: Table 2 and the leaderboard as rich tables, and ``report.html``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from covseg.demo.config import MODEL_NAME, demo_plan
from covseg.demo.run import Run, read_json

#: What each simulated team does to the truth (the parameters are those of covseg.demo.teams.TEAMS).
TEAM_NOTES = {
    "team-over-segmentation": "every lesion grown by 3 mm (a too-low threshold)",
    "team-under-segmentation": "every lesion shrunk by 2 mm (a too-high threshold)",
    "team-missed-small-lesions": "lesions under 5 mL dropped (poor sensitivity to small foci)",
    "team-boundary-noise": "border voxels flipped with probability 0.6 (noisy contours)",
    "team-false-positives": "4 spurious 8 mm blobs added inside the lungs per scan",
}
#: Table 2's metrics: column of metrics.csv -> label.
TABLE2 = {
    "dice": "Dice",
    "nsd": "NSD@1mm",
    "nave": "NAVE",
    "hd95": "HD95 mm",
    "lesion_f1": "lesion F1",
}
#: Consensus ranks shown: the challenge's significance ranking, and the ranking of mean values,
#: which still separates algorithms when a few test cases leave every Wilcoxon test undecided.
CONSENSUS_METHODS = {"test-then-rank": "rank (significance)", "aggregate-then-rank": "rank (mean)"}


def _cell(stats: dict[str, Any]) -> str:
    """``mean ± std`` of one metric, ``-`` when undefined."""
    if stats["mean"] is None:
        return "-"
    std = f" ± {stats['std']:.3f}" if stats["std"] is not None else ""
    return f"{stats['mean']:.3f}{std}"


def table2(folder: Path, algorithm: str = MODEL_NAME) -> Table:
    """Mean ± std of each metric for all, seen and unseen test cases (the paper's Table 2)."""
    summary = read_json(folder / "evaluation" / algorithm / "metrics_summary.json")
    table = Table(title=f"{algorithm} on the test cases (mean ± std)")
    table.add_column("metric")
    for subset in ("all", "seen", "unseen"):
        table.add_column(f"{subset} (n={summary[subset]['n']})")
    for metric, label in TABLE2.items():
        table.add_row(label, *(_cell(summary[s][metric]) for s in ("all", "seen", "unseen")))
    return table


def leaderboard(folder: Path) -> pd.DataFrame:
    """One row per algorithm: consensus ranks, mean Dice/NSD/NAVE on seen and unseen cases."""
    consensus = pd.read_csv(folder / "ranking" / "consensus.csv")
    board = pd.DataFrame({"algorithm": sorted(consensus["algorithm"].unique())})
    for method, column in CONSENSUS_METHODS.items():
        by_method = consensus[consensus["method"] == method].set_index("algorithm")["rank"]
        board[column] = board["algorithm"].map(by_method)
    for subset in ("seen", "unseen"):
        for metric in ("dice", "nsd", "nave"):
            board[f"{metric}_{subset}"] = [
                _summary(folder, name)[subset][metric]["mean"] for name in board["algorithm"]
            ]
    ranks = list(CONSENSUS_METHODS.values())
    board = board[[*ranks, *board.columns.drop(ranks)]]
    return board.sort_values([*ranks, "algorithm"]).reset_index(drop=True)


def _summary(folder: Path, algorithm: str) -> Any:
    return read_json(folder / "evaluation" / algorithm / "metrics_summary.json")


def leaderboard_table(board: pd.DataFrame) -> Table:
    """The leaderboard as a rich table that fits 80 columns; simulated teams carry a ``*``."""
    table = Table(
        title="Final ranking: consensus over 6 tasks (Dice, NSD, NAVE x seen, unseen)",
        caption="rank sig.: test-then-rank; rank mean: aggregate-then-rank; * simulated team",
    )
    metrics = {"dice_seen": "Dice\nseen", "dice_unseen": "Dice\nunseen"}
    metrics |= {"nsd_seen": "NSD\nseen", "nsd_unseen": "NSD\nunseen"}
    for column in ("rank\nsig.", "rank\nmean"):
        table.add_column(column, justify="right")
    table.add_column("algorithm", no_wrap=True)
    for column in metrics.values():
        table.add_column(column, justify="right")
    for row in board.to_dict("records"):
        mark = "" if row["algorithm"] == MODEL_NAME else " *"
        table.add_row(
            *(f"{row[c]:g}" for c in CONSENSUS_METHODS.values()),
            f"{row['algorithm']}{mark}",
            *(_number(row[c]) for c in metrics),
        )
    return table


def _number(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


def write_report(run: Run) -> Path:
    """Write ``report.html``: a self-contained page linking the full ranking report."""
    folder = run.folder
    _, overrides = demo_plan(run.config)
    board = leaderboard(folder)
    burden = pd.read_csv(folder / "burden" / "burden.csv")
    sections = [
        "<h1>covseg demo: a COVID-19-20-style challenge on synthetic phantoms</h1>",
        f"<p>{_esc(_setting_text(run))}</p>",
        "<h2>Final ranking</h2>",
        _html_table(board),
        "<p>Consensus over the six tasks (Dice, NSD, NAVE on seen and unseen cases). rank "
        "(significance): test-then-rank, the challenge's method (one-sided Wilcoxon, Holm), which "
        "needs about a dozen cases per task before any difference is significant; rank (mean): "
        "aggregate-then-rank on the means.</p>",
        "<p>Full statistical ranking (three methods, significance maps, bootstrap stability): "
        '<a href="ranking/report.html">ranking/report.html</a>.</p>',
        "<h2>Simulated teams</h2><p>Each team's predictions are the test truth perturbed in one "
        "documented way (covseg.demo.teams); they are not trained models.</p><ul>",
        *(f"<li><b>{_esc(name)}</b>: {_esc(note)}</li>" for name, note in _teams().items()),
        "</ul>",
        "<h2>The trained model</h2><p>The <code>baseline</code> preset, scaled down through its "
        "plan (model/plan.yaml) so that it trains in minutes on a CPU:</p><ul>",
        *(f"<li><code>{_esc(o)}</code></li>" for o in overrides),
        "</ul>",
        "<h2>Lesion burden of the test cases (from the model's masks)</h2>",
        _html_table(
            burden[["case", "source", "lesion_ml", "lung_ml", "involvement_pct", "lesion_count"]]
        ),
        "<p>Overlays: <code>burden/&lt;case&gt;.png</code>. Dataset fingerprint: "
        '<a href="fingerprint/fingerprint.png">fingerprint/fingerprint.png</a>.</p>',
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>covseg demo</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>"
        "</head><body>" + "\n".join(sections) + "</body></html>\n"
    )
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _setting_text(run: Run) -> str:
    c = run.config
    return (
        f"{c.n_train} training and {c.n_validation} validation phantoms from source A; "
        f"{c.n_test_seen} seen (A) and {c.n_test_unseen} unseen (B) test phantoms, {c.size} x "
        f"{c.size} in-plane; training budget {c.train_minutes:g} of {c.minutes:g} minutes; "
        f"{c.bootstrap} bootstrap samples; seed {c.seed}; covseg {c.version}."
    )


def _teams() -> dict[str, str]:
    from covseg.demo.teams import TEAMS

    return {name: TEAM_NOTES.get(name, "see covseg.demo.teams") for name in TEAMS}


def _esc(text: str) -> str:
    return html.escape(str(text))


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(_format(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.3g}"
    return str(value)
