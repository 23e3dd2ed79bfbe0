"""``covseg export``: a trained model's networks as TorchScript and ONNX files."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model folder from `covseg train`."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Default: MODEL/export."),
    fmt: list[str] = typer.Option(["torchscript", "onnx"], "--format", help="torchscript, onnx."),
) -> None:
    """Export each fold's network (inputs: normalised model-grid patches; outputs: logits) and
    check that every export gives the original network's output.

    Example: covseg export models/baseline --format onnx
    """
    from covseg.model.export import FORMATS, export_model
    from covseg.model.plan import PlanError

    unknown = sorted(set(fmt) - set(FORMATS))
    if unknown:
        raise fail(f"--format {unknown[0]}: choose from {', '.join(FORMATS)}")
    try:
        written = export_model(model, output, tuple(fmt))
    except (PlanError, ValueError) as exc:
        raise fail(str(exc)) from None
    for path in written:
        typer.echo(f"wrote {path}")
