"""``covseg fingerprint``: dataset statistics per source (the COVID-19-20 paper's Figure 3)."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command()
def fingerprint(
    data_dir: Path = typer.Argument(
        ..., help="Dataset folder (COVID-19-20, nnU-Net, manifest, 2D slices)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    seen_sources: str = typer.Option(
        "A", "--seen-sources", help="Comma-separated sources of the training data ('seen')."
    ),
) -> None:
    """Spacing, voxel volume, image size, lesion volume and HU histograms per source.

    Reads one case at a time. Writes OUT/fingerprint.csv (one row per case),
    OUT/fingerprint.json (per source and overall: median spacing and shape, lesion volume
    statistics, foreground (lesion) HU mean, std and percentiles 0.5/99.5, normalised HU
    histograms from -1024 to +1000 HU; the `auto` training preset reads it) and
    OUT/fingerprint.png. 2D slices have lesion areas (pixels, and mm² where they have a
    spacing) instead of volumes; cases without a source letter are "unknown". A case that cannot
    be read is reported on one line; the others go on, and the exit code is then 1.

    Example: covseg fingerprint data/COVID-19-20/ -o fingerprint/
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from covseg.datasets import Case, find_cases
    from covseg.fingerprint import fingerprint as run
    from covseg.fingerprint import summary_table, write_outputs

    try:
        cases = [c for c in find_cases(data_dir) if c.image is not None]
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not cases:
        raise fail(f"{data_dir}: no images found (only labels)")
    err = Console(stderr=True)
    sources = tuple(s.strip() for s in seen_sources.split(",") if s.strip())
    with Progress(console=err) as progress:
        task = progress.add_task("fingerprint", total=len(cases))

        def step(case: Case, error: str) -> None:
            if error:
                progress.console.print(
                    f"[red]error:[/] {escape(error)}", soft_wrap=True, highlight=False
                )
            progress.advance(task)

        table, summary = run(cases, sources, on_case=step)
    write_outputs(table, summary, output)
    console = Console()
    console.print(summary_table(summary))
    console.print(
        f"{summary['cases']} cases; wrote {output}/fingerprint.csv, fingerprint.json, "
        "fingerprint.png",
        highlight=False,
    )
    if summary["failed"]:
        raise typer.Exit(1)
