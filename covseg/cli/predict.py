"""``covseg predict``: segment lesions in CT scans with a trained model."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.cli._app import app, fail


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(..., help="CT files (NIfTI, NRRD, MHA) or folders."),
    model: Path = typer.Option(..., "-m", "--model", help="Model folder from `covseg train`."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for <case id>.nii.gz masks."),
    tta: bool | None = typer.Option(None, help="Test-time augmentation (default: the plan's)."),
    lung_crop: bool | None = typer.Option(None, help="Infer inside the lung box (default: plan)."),
    bf16: bool | None = typer.Option(None, help="bfloat16 where the CPU has it (default: plan)."),
    probability: bool = typer.Option(False, help="Also write probability/<case id>.nii.gz."),
    burden: bool = typer.Option(True, help="Write burden/<case id>.json (covseg quantify)."),
    workers: int = typer.Option(1, help="Local worker processes."),
    threads: int = typer.Option(0, help="torch CPU threads per worker (0: torch's default)."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address to spread scans on."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Segment every scan; masks have exactly each input's shape and affine, named by case id.

    Example: covseg predict phantoms/Validation -m models/baseline -o predictions
    """
    from covseg.datasets import DatasetError
    from covseg.model.batch import PredictJob, find_inputs, run_job
    from covseg.model.plan import PlanError, read_plan
    from covseg.parallel import map_unordered

    try:
        plan = read_plan(model)
    except PlanError as exc:
        raise fail(str(exc)) from None
    if plan.get("dimensions") == 2:
        from covseg.model.slices2d import predict_slices_2d

        predict_slices_2d(list(inputs), model, output, progress)
        return
    try:
        found = find_inputs(list(inputs))
    except DatasetError as exc:
        raise fail(str(exc)) from None
    options: dict[str, object] = {"tta": tta, "lung_crop": lung_crop, "bf16": bf16}
    options.update(probability=probability, burden=burden, threads=threads)
    jobs = [
        PredictJob(case_id, image, model, output, tuple(options.items()))
        for case_id, image in found
    ]
    failed = 0
    results = map_unordered(
        run_job,
        jobs,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        description="predict",
    )
    for _case_id, error in results:
        if error:
            failed += 1
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    typer.echo(f"{len(jobs) - failed} of {len(jobs)} scans segmented into {output}")
    if failed:
        raise typer.Exit(1)
