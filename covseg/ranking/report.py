"""Writing a ranking's outputs: the CSVs, the plots, a self-contained ``report.html``, and the
consensus as text for the terminal."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from covseg.ranking.result import RankingResult

_METHOD_TEXT = {
    "aggregate-then-rank": (
        "Each algorithm's values on a task are aggregated ({aggregate}) over the cases and the "
        "aggregates are ranked."
    ),
    "rank-then-aggregate": (
        "On each case the algorithms are ranked (a missing value gets the worst rank of its "
        "case); the {aggregate} of each algorithm's ranks is ranked again, smaller first."
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
        f"Ranks use R's ties method '{s['ties']}'"
        + (" (tied algorithms share the best rank)" if s["ties"] == "min" else "")
        + ". The consensus over tasks is the mean of each algorithm's per-task ranks, with ties "
        "in a task counted as average ranks (challengeR's Euclidean consensus), ranked again "
        "with ties 'min' on the exact mean rank: algorithms with equal mean ranks share a "
        "consensus rank (challengeR's optimiser may split them in either order)."
    )
    text.append(
        "Missing results: "
        + (
            "left out (challengeR's na.rm): of the algorithm's aggregate and of its pairs, and an "
            "algorithm without any result in a task is left out of that task's aggregate-then-"
            "rank and test-then-rank rankings; in rank-then-aggregate a missing value gets the "
            "worst rank of its case."
            if s["missing"] == "na.rm"
            else "refused (none were present)."
        )
    )
    smaller = s["smaller_better"]
    if smaller:
        text.append(f"Smaller values are better in: {', '.join(smaller)}.")  # type: ignore[arg-type]
    if s["bootstrap"]:
        seed = f"seed {s['seed']}" if s["seed"] is not None else "replayed draws"
        text.append(
            f"Stability: {s['bootstrap']} bootstrap samples ({seed}, {s['mode']} mode); in each, "
            "every task's cases are drawn with replacement and every method is re-run. Rank "
            "intervals are the 2.5 % and 97.5 % quantiles of the bootstrap ranks (R's type 7, "
            "which may fall between two ranks; the exact values are in bootstrap_summary.csv), "
            "shown widened to whole ranks: the lower one rounded down, the upper one up."
        )
    return text + list(result.notes)


def rank_interval(low: float, high: float) -> str:
    """A bootstrap quantile interval as whole ranks, widened outwards (``"2–5"``, ``"1"``)."""
    if math.isnan(low) or math.isnan(high):
        return ""
    lo, hi = math.floor(low + 1e-9), math.ceil(high - 1e-9)  # quantiles of integer ranks
    return str(lo) if lo == hi else f"{lo}–{hi}"


def consensus_text(result: RankingResult, top: int = 20) -> str:
    """The consensus ranking as a text table, for the terminal.

    Of test-then-rank (COVID-19-20's method) when it ran, else of the first method. Columns
    rank, algorithm, value (mean rank over the tasks) and, when bootstrapped, the consensus
    rank's 95 % bootstrap interval; the ``top`` best rows, then ``... N more``.
    """
    methods = [str(m) for m in result.settings["methods"]]  # type: ignore[attr-defined]
    method = "test-then-rank" if "test-then-rank" in methods else methods[0]
    rows = result.consensus[result.consensus.method == method]
    boot = result.bootstrap_consensus
    intervals = {}
    if not boot.empty:
        b = boot[boot.method == method]
        intervals = {
            a: rank_interval(lo, hi) for a, lo, hi in zip(b.algorithm, b.q025, b.q975, strict=True)
        }
    shown = rows.head(top)
    width = max([9, *(len(a) for a in shown.algorithm)])
    head = f"{'rank':>4}  {'algorithm':<{width}}  {'mean rank':>9}"
    if intervals:
        head += "  95% interval"
    n_alg, n_task = rows.shape[0], len(result.tasks)
    lines = [
        f"Consensus ranking ({method}, {n_alg} algorithm{'s' * (n_alg != 1)}, "
        f"{n_task} task{'s' * (n_task != 1)})"
    ]
    lines.append(head)
    for r in shown.itertuples(index=False):
        line = f"{r.rank:>4}  {r.algorithm:<{width}}  {r.value:>9.3f}"
        if intervals:
            line += f"  {intervals.get(r.algorithm, ''):>13}"
        lines.append(line)
    if len(rows) > top:
        lines.append(f"... {len(rows) - top} more")
    return "\n".join(lines)


def write_outputs(result: RankingResult, out_dir: Path, plot_format: str = "png") -> None:
    """Write the CSVs, ``plots/`` (``plot_format``: png, svg, both, none) and ``report.html``.

    Raises
    ------
    ValueError
        An unknown ``plot_format``, before anything is written.
    """
    from covseg.ranking.plots import FORMATS, write_plots

    if plot_format not in FORMATS:
        raise ValueError(f"unknown plot format {plot_format!r} (use {', '.join(FORMATS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    result.rankings.to_csv(out_dir / "rankings.csv", index=False)
    result.pairwise.to_csv(out_dir / "pairwise.csv", index=False)
    result.consensus.to_csv(out_dir / "consensus.csv", index=False)
    result.consensus_all.to_csv(out_dir / "consensus_all.csv", index=False)
    if not result.bootstrap_ranks.empty:
        result.bootstrap_ranks.to_csv(out_dir / "bootstrap_ranks.csv", index=False)
        result.bootstrap_summary.to_csv(out_dir / "bootstrap_summary.csv", index=False)
        result.bootstrap_consensus.to_csv(out_dir / "bootstrap_consensus.csv", index=False)
        result.kendall.to_csv(out_dir / "bootstrap_kendall.csv", index=False)
        result.kendall_summary.to_csv(out_dir / "bootstrap_kendall_summary.csv", index=False)
        result.draws.to_csv(out_dir / "bootstrap_draws.csv", index=False)
    plots = write_plots(result, out_dir / "plots", plot_format)
    env = Environment(
        loader=PackageLoader("covseg.ranking", "templates"), autoescape=select_autoescape()
    )
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for p in plots:
        mime = "image/png" if p.path.suffix == ".png" else "image/svg+xml"
        data = base64.b64encode(p.path.read_bytes()).decode("ascii")
        groups.setdefault(p.method or "across methods", []).append((p.title, mime, data))
    html = env.get_template("report.html").render(
        description=describe(result),
        consensus=_consensus_table(result),
        tasks=[(t.name, _task_table(result, t.name)) for t in result.tasks],
        kendall=_table(result.kendall_summary) if not result.kendall_summary.empty else None,
        plots=list(groups.items()),
    )
    (out_dir / "report.html").write_text(html, encoding="utf-8")


def _consensus_table(result: RankingResult) -> dict[str, list[list[str]] | list[str]]:
    """Consensus per method, with the bootstrap interval of the consensus rank as ranks."""
    frame = result.consensus
    if not result.bootstrap_consensus.empty:
        boot = result.bootstrap_consensus
        interval = [rank_interval(lo, hi) for lo, hi in zip(boot.q025, boot.q975, strict=True)]
        frame = frame.merge(
            boot[["method", "algorithm"]].assign(**{"95% interval": interval}),
            on=["method", "algorithm"],
            how="left",
        )
    return _table(frame)


def _task_table(result: RankingResult, task: str) -> dict[str, list[list[str]] | list[str]]:
    """One task's ranking under every method, with bootstrap rank intervals when present."""
    rows = result.rankings[result.rankings.task == task]
    if not result.bootstrap_summary.empty:
        boot = result.bootstrap_summary[
            ["method", "task", "algorithm", "median_rank", "q025", "q975"]
        ]
        rows = rows.merge(boot, on=["method", "task", "algorithm"], how="left")
        rows = rows.assign(
            **{
                "95% interval": [
                    rank_interval(lo, hi) for lo, hi in zip(rows.q025, rows.q975, strict=True)
                ]
            }
        ).drop(columns=["q025", "q975"])
    return _table(rows.drop(columns="task").sort_values(["method", "rank", "algorithm"]))


def _table(frame: pd.DataFrame) -> dict[str, list[list[str]] | list[str]]:
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    return {"columns": list(frame.columns), "rows": cells}
