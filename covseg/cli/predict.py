"""``covseg predict``: segment lesions in CT scans with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from covseg.cli._app import app, fail

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from covseg.io import Volume
    from covseg.model.batch import PredictJob
    from covseg.model.predict import Segmentation
    from covseg.model.slices2d.volume import VolumeSegmentation


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
    dicom_seg: bool = typer.Option(
        False, "--dicom-seg", help="slices-2d: also write DICOM SEG for DICOM series inputs."
    ),
    series: str | None = typer.Option(
        None, "--series", help="Series Instance UID to read where a folder holds several."
    ),
) -> None:
    """Segment every scan; masks have exactly each input's shape and affine, named by case id.

    A slices-2d model segments 2D slices (PNG/JPG, single DICOM files: OUT/<stem>.png) and CT
    volumes slice by slice (NIfTI, NRRD/MHA, DICOM series folders: OUT/<case>.nii.gz, with
    classes OUT/<case>_classes.nii.gz; --dicom-seg adds DICOM SEG objects for DICOM series).

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
        if threads:
            import torch

            torch.set_num_threads(threads)
        _predict_slices_2d(list(inputs), model, output, progress, dicom_seg, series, burden)
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
    write_burden(ct, result.mask.array, result.lung, job.out_dir / "burden" / f"{job.case_id}.json")


def write_burden(
    ct: Volume,
    lesion: NDArray[Any],
    lung: Volume | None,
    path: Path,
    classes: NDArray[Any] | None = None,
) -> Path:
    """``covseg quantify``'s report of ``ct`` and its lesion mask (and the model's lesion
    classes, where it has them), as JSON at ``path``."""
    import json

    from covseg.quantify import quantify, split_method

    report: dict[str, Any] = dict(quantify(ct, lesion, lung, classes))
    report["ggo_split"] = split_method(classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
    return path


def _predict_slices_2d(
    inputs: list[Path],
    model: Path,
    output: Path,
    progress: bool,
    dicom_seg: bool,
    series: str | None,
    burden: bool,
) -> None:
    """A slices-2d model: the 2D slices in one go, then each CT volume; a bad slice or volume is
    one error line and the others go on (exit code 1 at the end)."""
    from covseg.model.slices2d import predict_slices_2d
    from covseg.model.slices2d.cases import predict_volume_case, sort_inputs
    from covseg.model.slices2d.predict import load_ensemble

    found = sort_inputs(inputs, series)
    failed = len(found.errors)
    for error in found.errors:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    slice_errors: list[str] = []

    def slice_error(message: str) -> None:
        slice_errors.append(message)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)

    done = 0
    try:
        if found.slices:
            echo = typer.echo if progress else None
            done += len(predict_slices_2d(found.slices, model, output, echo, on_error=slice_error))
        ensemble = load_ensemble(model) if found.volumes else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    failed += len(slice_errors)

    def hook(case_id: str, ct: Volume, result: VolumeSegmentation) -> Path:
        path = output / "burden" / f"{case_id}.json"
        classes = None if result.classes is None else result.classes.array
        return write_burden(ct, result.lesion.array, result.lung, path, classes)

    for case in found.volumes:
        assert ensemble is not None
        try:
            written = predict_volume_case(
                case, ensemble, output, dicom_seg, hook if burden else None
            )
        except ValueError as exc:
            failed += 1
            message = str(exc)
            message = message if str(case.path) in message else f"{case.path}: {message}"
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            continue
        done += 1
        if progress:
            typer.echo(f"{case.path} -> {written[0]}")
        if dicom_seg and not case.path.is_dir():
            typer.echo(f"{case.path}: not a DICOM series, no DICOM SEG written")
    typer.echo(f"{done} of {done + failed} slices and volumes segmented into {output}")
    if failed:
        raise typer.Exit(1)
