"""Predicting many scans: find the inputs, segment each, write masks named by case id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covseg.datasets import DatasetError, case_id_from_filename, find_cases
from covseg.io import dicom_series, image_suffix, is_image_file

if TYPE_CHECKING:
    from covseg.io import Volume
    from covseg.model.predict import Segmentation


@dataclass(frozen=True)
class PredictJob:
    """One scan to segment and where its outputs go (picklable, for worker processes)."""

    case_id: str
    image: Path
    model_dir: Path
    out_dir: Path
    options: tuple[tuple[str, Any], ...] = ()


def find_inputs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(case id, image path) of every scan named: files, dataset folders or DICOM-series folders.

    Raises
    ------
    DatasetError
        For a path that does not exist or holds no scan.
    """
    found: list[tuple[str, Path]] = []
    for path in inputs:
        if path.is_file():
            found.append((case_id_from_filename(path.name), path))
        elif path.is_dir():
            found += _folder_inputs(path)
        else:
            raise DatasetError(f"{path}: no such file or folder")
    return found


def _folder_inputs(folder: Path) -> list[tuple[str, Path]]:
    """A dataset folder's images, else its image files, else the folder as one DICOM series
    (also when its files are the ``.dcm`` slices of a series)."""
    try:
        cases = [(c.case_id, c.image) for c in find_cases(folder) if c.image is not None]
    except DatasetError:
        cases = []
    if cases:
        return cases
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if is_image_file(p)]
    if images and all(image_suffix(p) == ".dcm" for p in images):
        if any(len(group) > 1 for group in dicom_series(folder).values()):
            return [(folder.name, folder)]  # `.dcm` slices of a series: one scan
    if images:
        return [(case_id_from_filename(p.name), p) for p in images]
    if files:
        return [(folder.name, folder)]  # files without an image suffix: a DICOM series
    raise DatasetError(f"{folder}: no scans found")


def run_job(
    job: PredictJob, then: Callable[[PredictJob, Volume, Segmentation], None] | None = None
) -> tuple[str, str | None]:
    """Segment one scan and write ``OUT/<case id>.nii.gz`` (plus the probability on request),
    then call ``then`` with the job, the scan and its segmentation (further outputs, such as
    the lesion burden); returns (case id, None) or (case id, one-line error) without raising."""

    import torch

    from covseg.io import VolumeReadError, read_volume, write_mask, write_volume
    from covseg.model.inference import load_models
    from covseg.model.plan import PlanError, read_plan
    from covseg.model.predict import segment

    options = dict(job.options)
    threads = int(options.pop("threads", 0))
    if threads:
        torch.set_num_threads(threads)
    try:
        plan = read_plan(job.model_dir)
        nets = _cached_models(job.model_dir, plan, load_models)
        ct = read_volume(job.image)
        result = segment(ct, nets, plan, path=job.image, **options)
        write_mask(result.mask.array, ct, job.out_dir / f"{job.case_id}.nii.gz")
        if result.probability is not None:
            write_volume(result.probability, job.out_dir / "probability" / f"{job.case_id}.nii.gz")
        if then is not None:
            then(job, ct, result)
    except (VolumeReadError, PlanError, ValueError) as exc:
        message = str(exc)
        return job.case_id, message if str(job.image) in message else f"{job.image}: {message}"
    return job.case_id, None


_MODELS: dict[Path, Any] = {}


def _cached_models(model_dir: Path, plan: dict[str, Any], load: Any) -> Any:
    """The fold networks, loaded once per process (a batch reuses them)."""
    key = model_dir.resolve()
    if key not in _MODELS:
        _MODELS[key] = load(model_dir, plan)
    return _MODELS[key]
