"""``covseg pseudo-label``: label unlabelled scans with a model, for semi-supervised training."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command("pseudo-label")
def pseudo_label(
    unlabelled: Path = typer.Argument(..., help="Folder (or file) of unlabelled CT scans."),
    model: Path = typer.Option(..., "-m", "--model", help="Model folder from `covseg train`."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Folder for the pseudo-labelled cases."
    ),
    min_confidence: float = typer.Option(
        0.9, help="Keep scans whose mean voxel confidence max(p, 1-p) reaches this (0.5..1)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Segment unlabelled scans and keep the confident ones as OUT/<case>_ct.nii.gz +
    <case>_seg.nii.gz (COVID-19-20 layout) with OUT/confidence.json; then train on labelled plus
    pseudo-labelled scans with `covseg train DATA -o MODEL2 --extra OUT`. With a slices-2d model,
    UNLABELLED is a folder of slices and OUT gets images/ + lesion/ (+ soft/) PNGs.

    Example: covseg pseudo-label unlabelled/ -m models/baseline -o pseudo
    """
    from rich.progress import track

    from covseg.datasets import DatasetError
    from covseg.model.batch import find_inputs
    from covseg.model.inference import load_models
    from covseg.model.plan import PlanError, read_plan
    from covseg.model.pseudolabel import pseudo_label_scan

    if not 0.5 <= min_confidence <= 1.0:
        raise fail(f"--min-confidence {min_confidence}: choose a value in 0.5..1")
    if _is_slices_2d(model):
        from covseg.model.slices2d.semi import pseudo_label_folder

        try:
            records = pseudo_label_folder(unlabelled, model, output, min_confidence, progress)
        except ValueError as exc:
            raise fail(str(exc)) from None
        kept = sum(r["kept"] for r in records)
        typer.echo(f"{kept} of {len(records)} slices pseudo-labelled into {output}")
        return
    try:
        plan = read_plan(model)
        nets = load_models(model, plan)
        scans = find_inputs([unlabelled])
    except (PlanError, DatasetError) as exc:
        raise fail(str(exc)) from None
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for case_id, image in track(scans, description="pseudo-label", disable=not progress):
        result = pseudo_label_scan(case_id, image, nets, plan, output, min_confidence)
        if result.error:
            typer.secho(f"error: {result.error}", fg=typer.colors.RED, err=True)
        results.append(result)
    records = [vars(r) for r in results]
    (output / "confidence.json").write_text(json.dumps(records, indent=2))
    kept = sum(r.kept for r in results)
    typer.echo(f"{kept} of {len(results)} scans pseudo-labelled into {output}")


def _is_slices_2d(model: Path) -> bool:
    """Whether ``model`` is a slices-2d model folder (its plan says ``dimensions: 2``)."""
    import yaml

    path = model / "plan.yaml"
    if not path.is_file():
        return False
    plan = yaml.safe_load(path.read_text())
    return isinstance(plan, dict) and plan.get("dimensions") == 2
