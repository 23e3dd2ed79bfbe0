"""``covseg agreement``: inter-observer agreement between two label sets of the same cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from covseg.cli._app import app, fail


@app.command()
def agreement(
    labels_a: Path = typer.Argument(
        ..., help="Set A, NAVE's reference: masks in any dataset layout, or flat."
    ),
    labels_b: Path = typer.Argument(..., help="Set B: masks named by the same case ids."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    tolerance_mm: float = typer.Option(
        1.0, "--tolerance-mm", min=0.0, help="Normalized Surface Dice tolerance in mm."
    ),
    label: int | None = typer.Option(
        None, "--label", help="Compare this label value of multi-label masks."
    ),
) -> None:
    """Agreement of two annotation sets: Dice, NSD, NAVE per case, and Bland-Altman of volumes.

    Writes OUT/agreement.csv (case, source, dice, nsd, nave, volume_a_ml, volume_b_ml,
    difference_ml, error), OUT/agreement.json (mean, sample sd and median of each metric, as
    "mean ± sd (median)" like the COVID-19-20 paper, and the Bland-Altman bias and 95 % limits
    of agreement of the lesion volumes in mL) and OUT/bland_altman.png. NAVE takes set A as the
    reference. A mask of set B on set A's grid in another axis order or direction is reoriented
    exactly. Cases in only one set, and cases that fail (another grid, unreadable), are
    reported on one line each; the others are compared, and the exit code is then 1. When no
    case can be compared (no id in common, every pair failed, a folder absent or empty),
    nothing is written and the exit code is 2.

    Example: covseg agreement reader1/ reader2/ -o agreement/
    """
    import json

    import pandas as pd
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import track
    from rich.table import Table

    from covseg.agreement import COLUMNS, compare_case, pair_cases, plot_bland_altman, summarize

    try:
        pairs, unmatched = pair_cases(labels_a, labels_b)
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
    if not pairs:
        raise fail(
            f"no case id in common between set A ({labels_a}, {len(unmatched['only_a'])} cases) "
            f"and set B ({labels_b}, {len(unmatched['only_b'])} cases)",
            code=2,
        )
    err = Console(stderr=True)
    for side, name, folder in (("only_a", "A", labels_a), ("only_b", "B", labels_b)):
        for case_id in unmatched[side]:
            err.print(
                f"[yellow]warning:[/] {escape(case_id)}: only in set {name} "
                f"({escape(str(folder))})",
                soft_wrap=True,
                highlight=False,
            )
    rows: list[dict[str, Any]] = []
    for case_a, case_b in track(pairs, description="agreement", console=err):
        row: dict[str, Any] = {"case": case_a.case_id, "source": case_a.source}
        try:
            assert case_a.label is not None and case_b.label is not None
            row |= compare_case(case_a.label, case_b.label, tolerance_mm, label) | {"error": ""}
        except ValueError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
            row["error"] = str(exc)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["case", "source", *COLUMNS, "error"])
    summary = summarize(table) | {"unmatched": unmatched, "tolerance_mm": tolerance_mm}
    if not summary["cases"]:
        raise fail(f"none of the {len(pairs)} cases in both sets could be compared", code=2)
    output.mkdir(parents=True, exist_ok=True)
    table.to_csv(output / "agreement.csv", index=False)
    (output / "agreement.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_bland_altman(table, summary["bland_altman"], output / "bland_altman.png")

    shown = Table(title=f"Agreement over {summary['cases']} cases: mean ± sd (median)")
    shown.add_column("metric")
    shown.add_column("value")
    for metric in ("dice", "nsd", "nave"):
        shown.add_row(
            metric if metric != "nsd" else f"nsd@{tolerance_mm:g}mm", summary[metric]["text"]
        )
    ba = summary["bland_altman"]
    if ba.get("lower_loa_ml") is not None:
        shown.add_row(
            "volume B - A",
            f"bias {ba['bias_ml']:.2f} mL, "
            f"limits {ba['lower_loa_ml']:.2f} .. {ba['upper_loa_ml']:.2f} mL",
        )
    console = Console()
    console.print(shown)
    console.print(
        f"wrote {output}/agreement.csv, agreement.json, bland_altman.png", highlight=False
    )
    if summary["failed"] or unmatched["only_a"] or unmatched["only_b"]:
        raise typer.Exit(1)
