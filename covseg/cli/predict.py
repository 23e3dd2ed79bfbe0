"""``covseg predict``: segment lesions in CT scans with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from covseg.cli._app import app, fail

if TYPE_CHECKING:
    from covseg.io import Volume
    from covseg.model.batch import PredictJob
    from covseg.model.predict import Segmentation


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
    from covseg.model.plan import PlanError, pipeline_of, read_plan
    from covseg.parallel import map_unordered

    try:
        plan = read_plan(model)
        slices = pipeline_of(plan) == "slices-2d"
    except PlanError as exc:
        raise fail(str(exc)) from None
    if slices:
        from covseg.model.slices2d import predict_slices_2d

        try:  # unreadable slices or model files: one line naming the file
            predict_slices_2d(list(inputs), model, output, typer.echo if progress else None)
        except ValueError as exc:
            raise fail(str(exc)) from None
        return
    try:
        found = find_inputs(list(inputs))
    except DatasetError as exc:
        raise fail(str(exc)) from None
    options: dict[str, object] = {"tta": tta, "lung_crop": lung_crop, "bf16": bf16}
    options.update(probability=probability, threads=threads)
    jobs = [
        PredictJob(case_id, image, model, output, tuple(options.items()))
        for case_id, image in found
    ]
    failed = 0
    results = map_unordered(
        run_job_with_burden if burden else run_job,
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


def run_job_with_burden(job: PredictJob) -> tuple[str, str | None]:
    """:func:`covseg.model.batch.run_job`, then ``burden/<case id>.json`` (``covseg quantify``'s
    report) from the scan and its mask; a module-level function, so workers can run it."""
    from covseg.model.batch import run_job

    return run_job(job, then=_write_burden)


def _write_burden(job: PredictJob, ct: Volume, result: Segmentation) -> None:
    import json

    from covseg.quantify import quantify

    report = quantify(ct, result.mask.array, result.lung)
    path = job.out_dir / "burden" / f"{job.case_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
