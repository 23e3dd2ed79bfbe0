"""Find the cases of a dataset folder, whatever its layout, and tell seen from unseen sources.

Layouts recognised by :func:`find_cases`, tried in this order:

- **CSV manifest**: ``FOLDER/*.csv`` (exactly one with a ``case`` and an ``image`` or ``label``
  column; other CSV files such as a metrics.csv are ignored) or the CSV file itself, with columns
  ``case, image, label, source`` (``image``/``label`` may be empty; ``source`` may be absent);
  paths are relative to the CSV's folder.
- **nnU-Net**: ``imagesTr/NAME_0000.nii.gz`` with ``labelsTr/NAME.nii.gz``, and ``imagesTs/``
  (with ``labelsTs/`` when present).
- **2D slices**: ``images/NAME.png|jpg`` with ``lesion/NAME.png`` or else ``labels/NAME.png``
  (matching stems; the case id is the stem), as in the MedSeg COVID-19 CT segmentation dataset.
- **COVID-19-20**: ``volume-covid19-A-0003_ct.nii.gz`` and ``volume-covid19-A-0003_seg.nii.gz``
  anywhere below the folder; the letter after ``covid19-`` is the source.

A case's source is the manifest's ``source`` column, else the COVID-19-20 letter in its id, else
``""`` (unknown). Its subset is "seen" (a source of the training data), "unseen" (another
source) or "unknown" (no source).
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from covseg.io import IMAGE_SUFFIXES, SLICE_SUFFIXES, image_suffix, is_image_file

#: Suffixes stripped from a file name's stem to get its case id (one of them, the first that fits).
ROLE_SUFFIXES = ("_ct", "_seg", "_0000")
_SOURCE = re.compile(r"covid19-([A-Za-z])-", re.IGNORECASE)


class DatasetError(ValueError):
    """A folder whose cases cannot be listed (message names the folder or file and the problem)."""


class CaseError(ValueError):
    """A case that cannot be used: trained on, predicted or scored (one line naming the file and
    the problem)."""


@dataclass(frozen=True)
class Case:
    """One case of a dataset.

    Parameters
    ----------
    case_id
        Identifier shared by the image, its label and any prediction (``volume-covid19-A-0003``).
    image
        CT volume or 2D slice, ``None`` for a labels-only folder.
    label
        Lesion mask, ``None`` for an unlabelled case.
    source
        Acquisition source (COVID-19-20: ``"A"`` or ``"B"``), ``""`` when unknown.
    """

    case_id: str
    image: Path | None
    label: Path | None
    source: str


def case_id_from_filename(name: str | Path) -> str:
    """The case id of an image, label or prediction file.

    Strips the image suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.png``, ``.jpg``...) and
    then one role suffix (``_ct``, ``_seg`` or nnU-Net's channel ``_0000``).

    Examples
    --------
    >>> case_id_from_filename("volume-covid19-A-0003_ct.nii.gz")
    'volume-covid19-A-0003'
    >>> case_id_from_filename("labelsTr/lung_001.nii.gz")
    'lung_001'
    """
    filename = Path(name).name
    suffix = image_suffix(filename)
    stem = filename[: -len(suffix)] if suffix in IMAGE_SUFFIXES else filename
    for role in ROLE_SUFFIXES:
        if stem.endswith(role) and len(stem) > len(role):
            return stem[: -len(role)]
    return stem


def scan_case_id(path: str | Path) -> str:
    """The case id of a scan given by path: a single DICOM file's id keeps its folder.

    DICOM slices are named by their series or instance (``19010101-23.dcm``), which repeats
    across patients; the folder (the patient) makes the id unique.

    Examples
    --------
    >>> scan_case_id("ny-sbu/A046441/19010101-23.dcm")
    'A046441_19010101-23'
    >>> scan_case_id("data/volume-covid19-A-0003_ct.nii.gz")
    'volume-covid19-A-0003'
    """
    path = Path(path)
    case_id = case_id_from_filename(path.name)
    folder = path.absolute().parent.name  # absolute: a bare file name has its folder too
    if path.suffix.lower() == ".dcm" and folder:
        return f"{folder}_{case_id}"
    return case_id


def source_from_case_id(case_id: str) -> str:
    """The COVID-19-20 source letter in a case id (``volume-covid19-B-0012``: B), else ``""``."""
    match = _SOURCE.search(case_id)
    return match.group(1).upper() if match else ""


#: The subsets a case can belong to, in report order.
SUBSETS = ("seen", "unseen", "unknown")


def subset_of(
    source: str, seen_sources: Iterable[str] = ("A",)
) -> Literal["seen", "unseen", "unknown"]:
    """``"seen"`` when ``source`` provided training data, ``"unseen"`` for another known source,
    ``"unknown"`` when the source is unknown (``""``: no manifest column, no letter in the id).

    In COVID-19-20 the training data came from source A only; test cases from B were "unseen".
    A case of unknown source is neither: counting it as unseen would credit an algorithm with
    generalising to a scanner it may well have been trained on.
    """
    if not source:
        return "unknown"
    return "seen" if source in set(seen_sources) else "unseen"


def find_cases(
    folder: str | Path, *, require_labels: bool = False, allow_duplicates: bool = False
) -> list[Case]:
    """List the cases of a dataset folder in any layout this module knows (see module docs).

    Parameters
    ----------
    folder
        Dataset folder (or a CSV manifest file).
    require_labels
        Refuse cases that have an image but no label.
    allow_duplicates
        Keep several cases with the same id (each once) instead of refusing them, so that a caller
        such as batch evaluation can flag those cases and carry on with the others.

    Returns
    -------
    list of Case
        Sorted by case id, numbers in ids compared as numbers (``2`` before ``10``).

    Raises
    ------
    DatasetError
        Absent or empty folder, unknown layout, duplicate case ids, missing labels.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: no such folder")
    if folder.is_file():
        if folder.suffix.lower() != ".csv":
            raise DatasetError(f"{folder}: not a folder or a CSV manifest")
        cases = _manifest_cases(folder)
    else:
        cases = _detect(folder)
    if not cases:
        raise DatasetError(
            f"{folder}: no cases found (expected a CSV manifest, nnU-Net imagesTr/labelsTr, "
            "images/ with lesion/ or labels/, or *_ct/*_seg files as in COVID-19-20)"
        )
    if not allow_duplicates:
        counts = Counter(case.case_id for case in cases)
        duplicates = sorted(case_id for case_id, n in counts.items() if n > 1)
        if duplicates:
            raise DatasetError(f"{folder}: duplicate case ids: {', '.join(duplicates[:5])}")
    if require_labels:
        unlabelled = [case for case in cases if case.label is None]
        if unlabelled:
            first = unlabelled[0]
            raise DatasetError(
                f"{first.image}: no label for case {first.case_id}"
                + (f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else "")
            )
    return sorted(cases, key=lambda case: natural_key(case.case_id))


def natural_key(text: str) -> list[int | str]:
    """Sort key comparing the numbers in ``text`` as numbers (``case2`` before ``case10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _is_manifest(path: Path) -> bool:
    """A CSV with a ``case`` column and an ``image`` or ``label`` column (not, say, metrics.csv)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = {name.strip().lower() for name in next(csv.reader(handle), [])}
    return "case" in header and bool(header & {"image", "label"})


def _detect(folder: Path) -> list[Case]:
    manifests = [path for path in sorted(folder.glob("*.csv")) if _is_manifest(path)]
    if len(manifests) > 1:
        names = ", ".join(path.name for path in manifests)
        raise DatasetError(f"{folder}: several CSV manifests ({names}); pass one of them")
    if manifests:
        return _manifest_cases(manifests[0])
    if any((folder / sub).is_dir() for sub in ("imagesTr", "labelsTr", "imagesTs")):
        return _nnunet_cases(folder)
    if (folder / "images").is_dir() or any((folder / sub).is_dir() for sub in ("lesion", "labels")):
        return _slice_cases(folder)
    return _covid_cases(folder)


def files_by_case(folder: str | Path) -> dict[str, list[Path]]:
    """Image files directly in ``folder`` grouped by :func:`case_id_from_filename`.

    This is the layout of a prediction folder (``<case>.nii.gz`` or ``<case>_seg.nii.gz``); a case
    with more than one file is ambiguous and left for the caller to flag.
    """
    grouped: dict[str, list[Path]] = defaultdict(list)
    for path in _image_files(Path(folder)):
        grouped[case_id_from_filename(path)].append(path)
    return dict(grouped)


def _image_files(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    if not folder.is_dir():
        return []
    wanted = tuple(suffixes)
    return sorted(p for p in folder.iterdir() if p.is_file() and image_suffix(p) in wanted)


def _stem(path: Path) -> str:
    return path.name[: -len(image_suffix(path))]


def _pair(
    images: list[Path], labels: list[Path], key: Callable[[Path], str] = case_id_from_filename
) -> list[Case]:
    """Cases from image and label files paired by ``key``; every file appears in one case, so
    duplicate ids show up as several cases."""
    labels_by_id: dict[str, list[Path]] = defaultdict(list)
    for label in labels:
        labels_by_id[key(label)].append(label)
    cases = []
    for image in images:
        case_id = key(image)
        found = labels_by_id.get(case_id, [])
        cases.append(
            Case(case_id, image, found[0] if found else None, source_from_case_id(case_id))
        )
    image_ids = {key(image) for image in images}
    for case_id, found in labels_by_id.items():
        extra = found[1:] if case_id in image_ids else found
        cases.extend(Case(case_id, None, path, source_from_case_id(case_id)) for path in extra)
    return cases


def _nnunet_cases(folder: Path) -> list[Case]:
    cases = []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        # Channel 0000 is the CT; other channels of multi-modal datasets are not cases.
        ct = [p for p in _image_files(folder / images) if _stem(p).endswith("_0000")]
        cases += _pair(ct, _image_files(folder / labels))
    return cases


def _slice_cases(folder: Path) -> list[Case]:
    label_dir = folder / "lesion" if (folder / "lesion").is_dir() else folder / "labels"
    images = _image_files(folder / "images", SLICE_SUFFIXES)
    return _pair(images, _image_files(label_dir, SLICE_SUFFIXES), key=_stem)


def _covid_cases(folder: Path) -> list[Case]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    images = [p for p in files if _stem(p).endswith("_ct")]
    labels = [p for p in files if _stem(p).endswith("_seg")]
    return _pair(images, labels)


def _manifest_cases(manifest: Path) -> list[Case]:
    root = manifest.parent
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        missing = {"case", "image", "label"} - columns
        if missing:
            raise DatasetError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
        cases = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            case_id = row["case"]
            if not case_id:
                raise DatasetError(f"{manifest}: line {line}: empty case id")
            image, label = (
                _manifest_path(root, row[key], manifest, line) for key in ("image", "label")
            )
            if image is None and label is None:
                raise DatasetError(f"{manifest}: line {line}: case {case_id} has no image or label")
            source = row.get("source") or source_from_case_id(case_id)
            cases.append(Case(case_id, image, label, source))
    return cases


def _manifest_path(root: Path, value: str, manifest: Path, line: int) -> Path | None:
    if not value:
        return None
    path = (root / value).resolve()
    if not path.exists():
        raise DatasetError(f"{manifest}: line {line}: {value} does not exist")
    return path
