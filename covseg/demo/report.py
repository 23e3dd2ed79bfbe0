"""The demo's results: Table 2 and the leaderboard as rich tables, and ``report.html``."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
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


#: Burden columns shown in the report: column of burden.csv -> header with its unit.
BURDEN_COLUMNS = {
    "case": "case",
    "source": "source",
    "lesion_ml": "lesion (mL)",
    "lung_ml": "lungs (mL)",
    "involvement_pct": "involvement (%)",
    "lesion_count": "lesions",
}
#: The figures of ``report.html``, in order: file under ``figures/`` -> caption.
FIGURES = {
    "blob.png": (
        "Bootstrap ranks (test-then-rank, 1,000 samples of the test cases): each algorithm's "
        "rank in every sample, per task; dot area = share of samples at that rank, cross = "
        "median, line = 95% interval."
    ),
    "boxplots.png": "Per-case Dice, NSD and NAVE of every algorithm, seen and unseen cases apart.",
    "podium_dice_seen.png": (
        "Podium of Dice on the seen cases: each case's value at the place the algorithm took "
        "on it; below, how often each algorithm took each place."
    ),
    "podium_dice_unseen.png": "Podium of Dice on the unseen cases.",
    "example_case.png": (
        "An example test case: every algorithm's lesion outline and the reference (dashed) on "
        "one axial and one coronal slice through the largest lesion."
    ),
}


def write_report(run: Run) -> Path:
    """Write ``report.html``: one self-contained page (figures inlined), to open or mail."""
    folder = run.folder
    _, overrides = demo_plan(run.config)
    board = leaderboard(folder)
    burden = pd.read_csv(folder / "burden" / "burden.csv")
    example = example_case_id(folder)
    ranks = {column: _rank for column in CONSENSUS_METHODS.values()}
    sections = [
        "<h1>covseg demo: a COVID-19-20-style challenge on synthetic phantoms</h1>",
        f"<p>{_esc(_setting_text(run))}</p>",
        "<h2>Final ranking</h2>",
        _html_table(board.rename(columns=_board_header), ranks),
        "<p>Consensus over the six tasks (Dice, NSD, NAVE on seen and unseen cases). rank "
        "(significance): test-then-rank, the challenge's method (one-sided Wilcoxon at 5 %, "
        "Holm's adjustment): an algorithm's rank in a task is one plus the number of algorithms "
        "significantly better than it; rank (mean): aggregate-then-rank on the means.</p>",
        "<p>Full statistical ranking (three methods, significance maps, bootstrap stability): "
        '<a href="ranking/report.html">ranking/report.html</a>.</p>',
        *(_figure(folder / "figures" / name, caption) for name, caption in FIGURES.items()),
        "<h2>Simulated teams</h2><p>Each team's predictions are the test truth perturbed in one "
        "documented way (covseg.demo.teams); they are not trained models.</p><ul>",
        *(f"<li><b>{_esc(name)}</b>: {_esc(note)}</li>" for name, note in _teams().items()),
        "</ul>",
        "<h2>The trained model</h2><p>The <code>baseline</code> preset, scaled down through its "
        "plan (model/plan.yaml) so that it trains in minutes on a CPU:</p><ul>",
        *(f"<li><code>{_esc(o)}</code></li>" for o in overrides),
        "</ul>",
        "<h2>Lesion burden of the test cases (from the model's masks)</h2>",
        _html_table(burden[list(BURDEN_COLUMNS)].rename(columns=BURDEN_COLUMNS)),
        _figure(
            folder / "burden" / f"{example}.png",
            f"Lesion burden overlay of {example}: lung and lesion outlines from the model's mask "
            "(all overlays: burden/<case>.png).",
        ),
        "<h2>The dataset</h2>",
        _figure(
            folder / "fingerprint" / "fingerprint.png",
            "Dataset fingerprint per source (the paper's Figure 3): spacing, size, lesion volume "
            "and HU histograms.",
        ),
    ]
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>covseg demo</title>'
        "<style>body{font-family:sans-serif;max-width:64em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "td{text-align:right}figure{margin:1.5em 0}img{max-width:100%}"
        "figcaption{font-size:90%;color:#444}</style>"
        "</head><body>" + "\n".join(sections) + "</body></html>\n"
    )
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def example_case_id(folder: Path) -> str:
    """The test case the report shows: the one with the largest reference lesion volume."""
    from covseg.io import read_volume

    burden = pd.read_csv(folder / "burden" / "burden.csv")
    truth = folder / "data" / "Test"
    volumes = {}
    for case in burden["case"]:
        mask = read_volume(truth / f"{case}_seg.nii.gz")
        volumes[str(case)] = float((mask.array != 0).sum() * np.prod(mask.spacing))
    return max(volumes, key=lambda c: volumes[c])


def _board_header(column: str) -> str:
    """``dice_seen`` -> ``Dice seen`` (mean over the subset's cases)."""
    metric, _, subset = column.partition("_")
    label = {"dice": "Dice", "nsd": "NSD", "nave": "NAVE"}.get(metric)
    return f"{label} {subset}" if label and subset else column


def _figure(path: Path, caption: str) -> str:
    """An ``<img>`` with the PNG inlined as base64, so that the page stands alone."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


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


def _html_table(frame: pd.DataFrame, formats: dict[str, Any] | None = None) -> str:
    """An HTML table; numbers as :func:`human` writes them unless ``formats`` names a column."""
    formats = formats or {}
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_esc(formats.get(c, human)(v))}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def human(value: Any, digits: int = 3) -> str:
    """A number as a person writes it: ``4,100``, ``12.3``, ``0.853``; ``-`` when missing.

    Whole numbers print whole with thousands separators; values of 100 and more are rounded
    to a whole number; smaller ones keep ``digits`` significant digits. Never scientific
    notation. Other values print as they are.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    number = float(value)
    if not np.isfinite(number):
        return str(number)
    if number.is_integer() or abs(number) >= 10 ** (digits - 1):
        return f"{number:,.0f}"
    decimals = digits - 1 - int(np.floor(np.log10(abs(number))))
    return f"{number:,.{decimals}f}"


def _rank(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):g}"
