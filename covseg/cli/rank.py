"""``covseg rank``: statistical ranking of challenge results (challengeR's methods)."""

from pathlib import Path

import typer

from covseg.cli._app import app, fail


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
        [], "--smaller", help="A task where smaller is better (repeatable; NAVE is automatic)."
    ),
    fill: str | None = typer.Option(
        None, "--fill-missing", help="Replace missing results by a number or 'worst'."
    ),
    draws: Path | None = typer.Option(
        None, "--draws", help="Replay bootstrap draws from a CSV with columns b, task, pos, case."
    ),
) -> None:
    """Rank algorithms per task, build the consensus, bootstrap, and write CSVs, plots and
    report.html.

    Example: ``covseg rank results/ -o ranking/ --method all --bootstrap 1000``
    """
    import pandas as pd

    from covseg.ranking import RankingInputError, fill_missing, load_results, run_ranking

    if not results.exists():
        raise fail(f"{results}: no such file or folder")
    try:
        table, auto_smaller = load_results(results)
    except RankingInputError as e:
        raise fail(f"{results}: {e}") from None
    smaller_better = auto_smaller | set(smaller)
    replay = None
    try:
        if fill is not None:
            value: float | str = fill if fill == "worst" else float(fill)
            table = fill_missing(table, value, smaller_better)
        if draws is not None:
            replay = pd.read_csv(draws, dtype={"task": str, "case": str})
    except ValueError:
        raise fail(f"--fill-missing: {fill!r} is neither a number nor 'worst'") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise fail(f"{draws}: cannot read draws ({e})") from None
    try:
        run_ranking(
            table,
            out_dir,
            methods=method,
            bootstrap=bootstrap,
            seed=seed,
            alpha=alpha,
            adjust=adjust,
            mode=mode,
            smaller_better=smaller_better,
            draws=replay,
            progress=True,
        )
    except RankingInputError as e:
        raise fail(
            f"{draws if replay is not None and 'draws' in str(e) else results}: {e}"
        ) from None
    typer.echo(f"wrote {out_dir / 'report.html'} and the CSVs and plots beside it")
