"""``covseg demo``: the whole system on synthetic phantoms, in minutes (the README's main job)."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command()
def demo(
    output: Path = typer.Option(Path("covseg-demo"), "-o", "--output", help="Demo folder."),
    minutes: float = typer.Option(
        10.0,
        "--minutes",
        help="Budget of the whole run on 2 idle cores; training gets all but 3.5 minutes of it.",
    ),
    tiny: bool = typer.Option(False, "--tiny", hidden=True, help="Smallest run (tests)."),
) -> None:
    """Run a whole COVID-19-20-style challenge on synthetic phantoms: dataset, fingerprint,
    baseline training, prediction, lesion burden, evaluation, simulated teams, statistical
    ranking and report.html. Running again in the same folder resumes the unfinished stages.

    Example: covseg demo -o covseg-demo --minutes 10
    """
    from rich.console import Console

    from covseg.demo import DemoFolderError, make_config, run_demo

    console = Console()
    try:
        config = make_config(minutes, tiny)
        ran = run_demo(output, config, console)
    except (DemoFolderError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not ran:
        console.print(f"{output}: every stage was already done; nothing to run")
    _summary(output, console)


def _summary(folder: Path, console: object) -> None:
    """Table 2, the leaderboard, where everything is, and the platform command."""
    from rich.console import Console

    from covseg.demo.report import leaderboard, leaderboard_table, table2

    assert isinstance(console, Console)
    console.rule("[bold]summary")
    console.print(table2(folder))
    console.print(leaderboard_table(leaderboard(folder)))
    places = {
        "report": "report.html, one page with the figures (details: ranking/report.html)",
        "phantom dataset": "data/ (Train, Validation, Test, lungs)",
        "fingerprint": "fingerprint/ (fingerprint.csv, .json, .png)",
        "trained model": "model/ (plan.yaml, fold_0/best.pt, log.csv)",
        "predictions": "predictions/<case>.nii.gz",
        "lesion burden": "burden/ (<case>.json, <case>.png, burden.csv)",
        "simulated teams": "teams/<team>/<case>.nii.gz",
        "evaluation": "evaluation/<algorithm>/metrics.csv (+ _summary.json)",
        "ranking": "ranking/ (CSVs, plots/, report.html)",
        "figures": "figures/ (the report's PNGs)",
    }
    for what, where in places.items():
        console.print(f"  {what:<16} {folder}/{where}", highlight=False)
    console.print(
        "Host the same kind of challenge on the platform: [bold]covseg serve --demo[/] "
        "then open http://127.0.0.1:8000"
    )
