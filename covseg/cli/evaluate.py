"""``covseg evaluate``: score a folder of predictions as the COVID-19-20 challenge did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from covseg.cli._app import app, fail

#: Metrics shown in the printed summary (all of them are in the CSV and the JSON).
_SHOWN = ("dice", "nsd", "nave", "hd95", "assd", "lesion_f1", "fp_lesions")


@app.command()
def evaluate(
    pred_dir: Path = typer.Argument(..., help="Predictions named by case id (<case>.nii.gz)."),
    truth_dir: Path = typer.Argument(
        ..., help="Truth masks: COVID-19-20, nnU-Net, manifest or 2D-slice layout, or flat."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="metrics.csv to write."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Local worker processes (default: all cores; 1 runs in-process).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786) to run on instead; its workers need "
        "covseg and the same paths (shared file system).",
    ),
    label: int | None = typer.Option(
        None, "--label", help="Evaluate this label value of multi-label masks."
    ),
    seen_sources: str = typer.Option(
        "A", "--seen-sources", help="Comma-separated sources of the training data ('seen')."
    ),
    tolerance_mm: float = typer.Option(
        1.0, "--tolerance-mm", min=0.0, help="Normalized Surface Dice tolerance in mm."
    ),
) -> None:
    """Score every truth case against its prediction: Dice, NSD, NAVE, HD95, ASSD, lesion-wise.

    Writes one row per case to the CSV (case, source, subset, metrics, status, error) and the
    Table-2 summary (mean, std, median for all cases and the seen, unseen and unknown-source
    ones) to <stem>_summary.json beside it. 2D slices have lesion areas (truth_px, pred_px, and
    truth_mm2, pred_mm2 when they have a spacing) instead of volumes in mL. A missing prediction
    is scored as an empty mask. A mask on the truth's grid in another axis order or direction
    (LAS against LPS, say) is reoriented exactly. A case that cannot be scored (unreadable file,
    another grid, labels other than 0/1, NaN, duplicate id) is reported on one line and left out
    of the summary; the others are still scored.

    Exit code: 0 when every case was scored; 1 when any case failed or had no prediction (the
    CSV and summary are still written); 2 when nothing could be evaluated (absent or empty
    folder).

    Example: covseg evaluate predictions/ Validation/ -o metrics.csv --workers 4
    """
    from rich.console import Console
    from rich.markup import escape

    from covseg.datasets import DatasetError
    from covseg.metrics.batch import (
        evaluate_folder,
        present_subsets,
        summary_path,
        write_evaluation,
    )

    sources = tuple(s.strip() for s in seen_sources.split(",") if s.strip())
    try:
        table = evaluate_folder(
            pred_dir,
            truth_dir,
            workers=workers,
            scheduler=scheduler,
            label=label,
            seen_sources=sources,
            tolerance_mm=tolerance_mm,
            progress=True,
        )
    except DatasetError as exc:
        raise fail(str(exc), code=2) from None
    except OSError as exc:  # e.g. an unreachable Dask scheduler
        raise fail(f"{scheduler or pred_dir}: {exc}", code=2) from None
    summary = write_evaluation(table, output)

    console = Console()
    console.print(_summary_table(summary, present_subsets(table)))
    err = Console(stderr=True)
    # One line per problem, never wrapped, so that it can be grepped.
    for path in table.attrs.get("unmatched_predictions", []):
        err.print(
            f"[yellow]warning:[/] {escape(path)}: no truth case with this id; not scored",
            soft_wrap=True,
            highlight=False,
        )
    for row in table.to_dict("records"):
        status = str(row["status"])
        if status in ("missing", "failed"):
            colour = "yellow" if status == "missing" else "red"
            where = f"{row['case']}: " if status == "missing" else ""
            err.print(
                f"[{colour}]{status}:[/] {escape(where + str(row['error']))}",
                soft_wrap=True,
                highlight=False,
            )
    counts = summary["cases"]
    console.print(
        f"{len(table)} cases: {counts['ok']} ok, {counts['missing']} missing, "
        f"{counts['failed']} failed; wrote {output} and {summary_path(output)}",
        soft_wrap=True,
        highlight=False,
    )
    if counts["missing"] or counts["failed"]:
        raise typer.Exit(1)


def _summary_table(summary: dict[str, Any], subsets: list[str]) -> Any:
    """The Table-2 summary for ``all`` and the subsets present."""
    from rich.table import Table

    infinite = any(summary["all"][metric]["infinite"] for metric in _SHOWN)
    table = Table(
        title="Summary: mean ± std / median",
        caption="+k inf: k infinite values (empty masks) left out" if infinite else None,
    )
    table.add_column("metric")
    for subset in subsets:
        table.add_column(f"{subset} (n={summary[subset]['n']})", justify="right")
    for metric in _SHOWN:
        cells = []
        for subset in subsets:
            stats = summary[subset][metric]
            if stats["mean"] is None:
                cells.append("-" + (f"\n+{stats['infinite']} inf" if stats["infinite"] else ""))
                continue
            std = "-" if stats["std"] is None else f"{stats['std']:.3f}"
            left_out = f" +{stats['infinite']} inf" if stats["infinite"] else ""
            cells.append(f"{stats['mean']:.3f} ± {std}\n{stats['median']:.3f}{left_out}")
        table.add_row(metric, *cells)
    return table
