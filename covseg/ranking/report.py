"""Writing a ranking's outputs: the CSVs, the plots and a self-contained ``report.html``."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from covseg.ranking.run import RankingResult

_METHOD_TEXT = {
    "aggregate-then-rank": (
        "Each algorithm's values on a task are aggregated ({aggregate}) over the cases and the "
        "aggregates are ranked."
    ),
    "rank-then-aggregate": (
        "On each case the algorithms are ranked (ties get the best rank of the tie); the "
        "{aggregate} of each algorithm's ranks is ranked again, smaller first."
    ),
    "test-then-rank": (
        "Every ordered pair of algorithms is compared with a one-sided paired Wilcoxon "
        "signed-rank test (normal approximation with continuity correction, cases matched, zero "
        "differences dropped); the p-values of a task are adjusted ({adjust}) and an algorithm's "
        "score is the share of the other algorithms it beats at alpha = {alpha}."
    ),
}


def describe(result: RankingResult) -> list[str]:
    """The methods and settings of a ranking, in words (one paragraph each)."""
    s = result.settings
    text = []
    for name in s["methods"]:  # type: ignore[attr-defined]
        kind, _, aggregate = str(name).partition(":")
        text.append(
            f"{name}: "
            + _METHOD_TEXT[kind].format(
                aggregate=aggregate or "mean", adjust=s["adjust"], alpha=s["alpha"]
            )
        )
    text.append(
        "Ranks use ties 'min' (tied algorithms share the best rank). The consensus over tasks is "
        "the mean of each algorithm's per-task ranks, with ties in a task counted as average "
        "ranks (challengeR's Euclidean consensus), ranked again."
    )
    smaller = s["smaller_better"]
    if smaller:
        text.append(f"Smaller values are better in: {', '.join(smaller)}.")  # type: ignore[arg-type]
    if s["bootstrap"]:
        seed = f"seed {s['seed']}" if s["seed"] is not None else "replayed draws"
        text.append(
            f"Stability: {s['bootstrap']} bootstrap samples ({seed}, {s['mode']} mode); in each, "
            "every task's cases are drawn with replacement and every method is re-run."
        )
    return text


def write_outputs(result: RankingResult, out_dir: Path) -> None:
    """Write the CSVs, ``plots/`` (PNG and SVG) and ``report.html`` into ``out_dir``."""
    from covseg.ranking.plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    result.rankings.to_csv(out_dir / "rankings.csv", index=False)
    result.pairwise.to_csv(out_dir / "pairwise.csv", index=False)
    result.consensus.to_csv(out_dir / "consensus.csv", index=False)
    result.consensus_all.to_csv(out_dir / "consensus_all.csv", index=False)
    if not result.bootstrap_ranks.empty:
        result.bootstrap_ranks.to_csv(out_dir / "bootstrap_ranks.csv", index=False)
        result.bootstrap_summary.to_csv(out_dir / "bootstrap_summary.csv", index=False)
        result.kendall.to_csv(out_dir / "bootstrap_kendall.csv", index=False)
        result.kendall_summary.to_csv(out_dir / "bootstrap_kendall_summary.csv", index=False)
        result.draws.to_csv(out_dir / "bootstrap_draws.csv", index=False)
    plots = write_plots(result, out_dir / "plots")
    env = Environment(
        loader=PackageLoader("covseg.ranking", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("report.html").render(
        description=describe(result),
        consensus=_table(result.consensus),
        tasks=[(t.name, _task_table(result, t.name)) for t in result.tasks],
        kendall=_table(result.kendall_summary) if not result.kendall_summary.empty else None,
        plots=[(p.title, base64.b64encode(p.png.read_bytes()).decode("ascii")) for p in plots],
    )
    (out_dir / "report.html").write_text(html, encoding="utf-8")


def _task_table(result: RankingResult, task: str) -> dict[str, list[list[str]] | list[str]]:
    """One task's ranking under every method, with bootstrap rank intervals when present."""
    rows = result.rankings[result.rankings.task == task]
    if not result.bootstrap_summary.empty:
        boot = result.bootstrap_summary[
            ["method", "task", "algorithm", "median_rank", "q025", "q975"]
        ]
        rows = rows.merge(boot, on=["method", "task", "algorithm"], how="left")
        rows = rows.assign(
            interval=[f"{lo:g}–{hi:g}" for lo, hi in zip(rows.q025, rows.q975, strict=True)]
        ).drop(columns=["q025", "q975"])
    return _table(rows.drop(columns="task").sort_values(["method", "rank", "algorithm"]))


def _table(frame: pd.DataFrame) -> dict[str, list[list[str]] | list[str]]:
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    return {"columns": list(frame.columns), "rows": cells}
