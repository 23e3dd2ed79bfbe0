"""``covseg predict`` with a ``slices-2d`` model: 2D slices as before, CT volumes slice by slice.

Inputs are sorted by what they hold:

- 2D slices: PNG/JPG files, single DICOM files, a slice folder (``images/`` or image files), and
  a folder of DICOM files that are each a series of their own (single slices, as NY-SBU's);
  they are segmented by :func:`~covseg.model.slices2d.predict_slices_2d` (``OUT/<stem>.png``).
- CT volumes: NIfTI/NRRD/MHA files and folders holding a DICOM series of several slices; each
  is segmented by :func:`~covseg.model.slices2d.volume.segment_volume` and written as
  ``OUT/<case>.nii.gz`` (``OUT/<case>_classes.nii.gz`` with a class model) on the CT's grid,
  ``OUT/burden/<case>.json`` (written by the CLI's hook), and for a DICOM series on
  request DICOM SEG objects (``OUT/<case>_seg.dcm``, ``OUT/<case>_classes_seg.dcm``).

A folder holding several DICOM series of several slices needs ``series`` (its UID); folders
without image files are searched one level down (a folder of series folders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from covseg.datasets import DatasetError, case_id_from_filename, find_cases
from covseg.io import (
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    Volume,
    dicom_series,
    image_suffix,
    pick_series,
)
from covseg.model.slices2d.data import IMAGE_SUFFIXES, list_images
from covseg.model.slices2d.predict import Ensemble
from covseg.model.slices2d.volume import VolumeSegmentation, segment_volume

#: Suffixes of files read as CT volumes.
VOLUME_SUFFIXES = NIFTI_SUFFIXES + tuple(s for s in ITK_SUFFIXES if s != ".dcm")
#: The algorithm named in DICOM SEG objects.
ALGORITHM = "covseg slices-2d"


@dataclass(frozen=True)
class VolumeCase:
    """A CT volume to segment: a file, or a folder holding a DICOM series (``series``: its UID
    where the folder holds several)."""

    case_id: str
    path: Path
    series: str | None = None


@dataclass
class Inputs:
    """The inputs of one ``covseg predict`` call, sorted (see the module docstring)."""

    slices: list[Path]
    volumes: list[VolumeCase]
    errors: list[str]


def sort_inputs(paths: list[Path], series: str | None = None) -> Inputs:
    """Sort files and folders into 2D slices and CT volumes; bad ones become one-line errors.

    Parameters
    ----------
    paths
        Files and folders as given on the command line.
    series
        Series Instance UID to read where a folder holds several DICOM series.
    """
    found = Inputs([], [], [])
    for path in paths:
        if path.is_file():
            _add_file(found, path)
        elif path.is_dir():
            _add_folder(found, path, series, depth=0)
        else:
            found.errors.append(f"{path}: no such file or folder")
    return found


def _add_file(found: Inputs, path: Path) -> None:
    if image_suffix(path) in VOLUME_SUFFIXES:
        found.volumes.append(VolumeCase(case_id_from_filename(path.name), path))
    else:  # PNG/JPG, or a DICOM file: one slice
        found.slices.append(path)


def _add_folder(found: Inputs, folder: Path, series: str | None, depth: int) -> None:
    if (folder / "images").is_dir():
        found.slices += list_images(folder / "images")
        return
    try:
        cases = [c.image for c in find_cases(folder) if c.image is not None]
    except DatasetError:
        cases = []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = cases or [p for p in files if image_suffix(p) in VOLUME_SUFFIXES + IMAGE_SUFFIXES]
    for path in images:
        _add_file(found, path)
    if images:
        return
    groups = dicom_series(folder) if files else {}
    if groups and all(len(g) == 1 for g in groups.values()) and series not in groups:
        found.slices += sorted(Path(g[0]) for g in groups.values())  # single DICOM slices
    elif groups:
        try:
            uid, _ = pick_series(folder, series if series in groups else None)
        except ValueError as exc:
            found.errors.append(str(exc))
            return
        found.volumes.append(VolumeCase(folder.name, folder, uid if len(groups) > 1 else None))
    elif depth == 0 and any(p.is_dir() for p in folder.iterdir()):
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            _add_folder(found, sub, series, depth + 1)
    else:
        found.errors.append(f"{folder}: no slices, CT volumes or DICOM series found")


def predict_volume_case(
    case: VolumeCase,
    ensemble: Ensemble,
    out_dir: Path,
    dicom_seg: bool = False,
    then: Callable[[str, Volume, VolumeSegmentation], Path] | None = None,
) -> list[Path]:
    """Segment one CT volume and write its outputs; returns the files written.

    ``then(case_id, ct, result)``, if given, writes one more file from the scan and its
    segmentation (the CLI's lesion burden: a higher layer than this one) and returns its path.

    Raises
    ------
    ValueError
        For an unreadable, 2D or non-HU image, or a volume without lungs (one line naming it).
    """
    from covseg.io import read_volume, write_mask

    ct = read_volume(case.path, case.series)
    result = segment_volume(ct, ensemble, case.path)
    written = [write_mask(result.lesion.array, ct, out_dir / f"{case.case_id}.nii.gz")]
    if result.classes is not None:
        written.append(
            write_mask(result.classes.array, ct, out_dir / f"{case.case_id}_classes.nii.gz")
        )
    if then is not None:
        written.append(then(case.case_id, ct, result))
    if dicom_seg and case.path.is_dir():
        written += _write_dicom_segs(case, result, out_dir)
    return written


def _write_dicom_segs(case: VolumeCase, result: VolumeSegmentation, out_dir: Path) -> list[Path]:
    """The lesion (and classes) as DICOM SEG objects over the case's source series."""
    from covseg.dicom_seg import CLASSES, LESION, Segment, write_dicom_seg

    _, files = pick_series(case.path, case.series)
    maps: list[tuple[str, Volume, tuple[Segment, ...], str]] = [
        ("seg", result.lesion, (LESION,), "covseg lesion")
    ]
    if result.classes is not None:
        maps.append(("classes_seg", result.classes, CLASSES, "covseg lesion classes"))
    return [
        write_dicom_seg(
            volume.array, files, out_dir / f"{case.case_id}_{name}.dcm", segments, title, ALGORITHM
        )
        for name, volume, segments, title in maps
    ]
