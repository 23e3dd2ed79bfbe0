"""``covseg rank``: statistical ranking of challenge results (challengeR's methods)."""

from pathlib import Path

import typer

from covseg.cli._app import app, fail


def _bad(message: str) -> typer.Exit:
    """Bad input: one line, exit status 2."""
    return fail(message, 2)


@app.command()
def rank(
    results: Path = typer.Argument(
        ...,
        help="Long CSV (task, case, algorithm, value) or a folder of covseg evaluate outputs "
        "(NAME/metrics.csv or NAME.csv per algorithm).",
    ),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    method: list[str] = typer.Option(
        ["test-then-rank"],
        "--method",
        help="aggregate-then-rank[:median|min|max], rank-then-aggregate, test-then-rank or all "
        "(repeat for several).",
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap samples (0 for none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap draws."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
    adjust: str = typer.Option(
        "holm", "--adjust", help="P-value adjustment: holm, bonferroni, hochberg, BH, BY, none."
    ),
    mode: str = typer.Option(
        "statistical",
        "--mode",
        help="Bootstrap mode: statistical or challenger (challengeR 1.0.5).",
    ),
    smaller: list[str] = typer.Option(
        [],
        "--smaller",
        help="A task where smaller is better (repeatable; for a folder of metrics.csv each "
        "metric's direction comes from the metric registry).",
    ),
    fill: str | None = typer.Option(
        None, "--fill-missing", help="Replace missing results by a number or 'worst'."
    ),
    draws: Path | None = typer.Option(
        None, "--draws", help="Replay bootstrap draws from a CSV with columns b, task, pos, case."
    ),
    tasks: str | None = typer.Option(
        None,
        "--tasks",
        help="Folder: metric columns of metrics.csv to rank, each split by subset (default "
        "dice,nsd,nave; e.g. dice,nsd,nave,lesion_f1). Long CSV: the task names to rank.",
    ),
    ties: str = typer.Option(
        "min", "--ties", help="R's ties method for every rank: min, max, average, first, last."
    ),
    missing: str = typer.Option(
        "na.rm",
        "--missing",
        help="Missing results: na.rm (leave them out, challengeR's na.rm) or error (refuse, "
        "as challengeR without na.treat). --fill-missing fills them instead.",
    ),
    plots: str = typer.Option(
        "png", "--plots", help="Plot files: png, svg, both or none (the report embeds them)."
    ),
) -> None:
    """Rank algorithms per task, build the consensus, bootstrap, write CSVs, plots and
    report.html, and print the consensus ranking.

    Example: ``covseg rank results/ -o ranking/ --method all --bootstrap 1000``

    Lesion-aware: ``covseg rank results/ -o ranking/ --tasks dice,nsd,nave,lesion_f1``
    """
    import pandas as pd

    from covseg.ranking import RankingInputError, fill_missing, load_results, run_ranking
    from covseg.ranking.plots import FORMATS
    from covseg.ranking.report import consensus_text, write_outputs

    if not results.exists():
        raise _bad(f"{results}: no such file or folder")
    if plots not in FORMATS:
        raise _bad(f"--plots: {plots!r} is not one of {', '.join(FORMATS)}")
    names = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    if names is not None and not names:
        raise _bad("--tasks: no task or metric named")
    try:
        table, auto_smaller = load_results(results, names)
    except RankingInputError as e:
        raise _bad(f"{results}: {e}") from None
    smaller_better = auto_smaller | set(smaller)
    replay = None
    try:
        if fill is not None:
            value: float | str = fill if fill == "worst" else float(fill)
            table = fill_missing(table, value, smaller_better)
        if draws is not None:
            replay = pd.read_csv(draws, dtype={"task": str, "case": str})
    except ValueError:
        raise _bad(f"--fill-missing: {fill!r} is neither a number nor 'worst'") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise _bad(f"{draws}: cannot read draws ({e})") from None
    try:
        result = run_ranking(
            table,
            methods=method,
            bootstrap=bootstrap,
            seed=seed,
            alpha=alpha,
            adjust=adjust,
            mode=mode,
            smaller_better=smaller_better,
            draws=replay,
            progress=True,
            ties=ties,
            missing=missing,
        )
    except RankingInputError as e:
        raise _bad(
            f"{draws if replay is not None and 'draws' in str(e) else results}: {e}"
        ) from None
    write_outputs(result, out_dir, plots)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(consensus_text(result))
    typer.echo(f"report: {out_dir / 'report.html'} (CSVs and plots beside it)")
