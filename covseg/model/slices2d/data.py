"""Read 2D CT slices and their lesion masks for the ``slices-2d`` preset.

A slice folder holds ``images/`` (PNG/JPG, 8-bit) and ``lesion/`` (or ``labels/``) with masks of
the same file stem, values 0/255 (0/1 also accepted), and optionally ``classes/`` with class maps
(0 background, 1 ground-glass opacity, 2 consolidation), as MedSeg's slices come. Unlabelled HU
slices (DICOM) are converted to the 8-bit appearance of the MedSeg slices: cropped to the field
those show (:func:`field_box`) and windowed (see :data:`HU_WINDOW` and ``docs/slices2d.md`` for
how the window was estimated).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from covseg.datasets import Case, find_cases

#: Suffixes read as 8-bit slices.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Suffixes read as HU slices.
DICOM_SUFFIXES = (".dcm",)
#: Sub-folder of a slice folder holding the class maps.
CLASS_FOLDER = "classes"
#: Lesion classes of a class map, by value.
CLASS_NAMES = {1: "ground-glass", 2: "consolidation"}
#: HU window (low, high) mapped to 0..255, fitted so that body-cropped NY-SBU slices match the
#: pooled intensity histogram of the MedSeg slices (:func:`fit_hu_window`).
HU_WINDOW = (-1100.0, 300.0)
#: The smallest side (mm) of the field an HU slice is cropped to around its lungs
#: (:func:`field_box`).
MIN_FIELD_MM = 180.0
#: Orientation of a slice as shown (anterior at the top, the patient's right on the image's
#: left), as nibabel axis codes of (row, column, slice).
DISPLAY = ("P", "L", "S")


def list_images(folder: Path) -> list[Path]:
    """Image files (PNG/JPG/DICOM) directly in ``folder``, sorted by name."""
    suffixes = IMAGE_SUFFIXES + DICOM_SUFFIXES
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def find_slice_cases(folder: Path) -> list[Case]:
    """The labelled slices of ``folder`` (``images/`` with ``lesion/`` or ``labels/``).

    Discovery is :func:`covseg.datasets.find_cases`; the cases come sorted by id as strings, which
    fixes the fold assignment of :mod:`covseg.model.slices2d.cv`.

    Raises
    ------
    ValueError
        If the folder has no slices or an image has no mask; the message names the file.
    """
    cases = find_cases(folder, require_labels=True)
    for case in cases:
        if case.image is None or case.image.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{case.image or case.label}: not a PNG/JPG slice with a mask")
    return sorted(cases, key=lambda c: c.case_id)


def read_slice(path: Path) -> npt.NDArray[np.uint8]:
    """Read a slice as a 2D uint8 array: 8-bit files as grey; DICOM (HU) cropped to its field
    (:func:`read_dicom_slice`) and windowed with :data:`HU_WINDOW`."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        dicom = read_dicom_slice(path)
        return window_hu(dicom.hu[dicom.field])
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err


def read_mask(path: Path, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """Read a 0/255 (or 0/1) lesion mask and check it matches the image ``shape``.

    Raises
    ------
    ValueError
        If the mask's size differs from the image's or it holds other values.
    """
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L") if im.mode not in ("L", "1", "P") else im)
    if mask.ndim != 2 or mask.shape != shape:
        raise ValueError(f"{path}: mask size {mask.shape[::-1]} differs from image {shape[::-1]}")
    values = set(np.unique(mask).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        raise ValueError(f"{path}: mask values must be 0/255 (or 0/1), found {sorted(values)[:8]}")
    return mask > 0


def read_hu(path: Path) -> npt.NDArray[np.float32]:
    """Read one DICOM slice in HU (rescale slope/intercept applied by SimpleITK)."""
    import SimpleITK as sitk

    try:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError as err:
        raise ValueError(f"{path}: not a readable DICOM slice ({err})") from err
    if array.ndim == 3 and array.shape[0] > 1:
        raise ValueError(
            f"{path}: a 3D image ({array.shape[0]} slices) where a 2D slice is needed; "
            "give volumes as NIfTI/NRRD files or DICOM series folders"
        )
    return np.asarray(array, dtype=np.float32).reshape(array.shape[-2:])


class DicomSlice(NamedTuple):
    """One DICOM slice as the networks see it (:func:`read_dicom_slice`).

    Attributes
    ----------
    hu
        The slice in HU (rows, columns).
    field
        The part the networks see (:func:`field_box`).
    lungs
        Its lung pixels (:func:`covseg.lung.lung_mask`), ``None`` where none were found.
    pixel_mm
        Pixel size (mm) along rows and columns.
    """

    hu: npt.NDArray[np.float32]
    field: tuple[slice, slice]
    lungs: npt.NDArray[np.bool_] | None
    pixel_mm: tuple[float, float]


def read_dicom_slice(path: Path) -> DicomSlice:
    """One DICOM slice in HU, its field and lungs; where no lungs are found, the body's box.

    Raises
    ------
    ValueError
        If the file is not a readable 2D DICOM slice; the message names it.
    """
    from covseg.io import read_volume
    from covseg.lung import lung_mask

    hu = read_hu(path)
    volume = read_volume(path)
    pixel = (float(volume.spacing[1]), float(volume.spacing[0]))  # (column, row, 1) array
    try:
        lungs = np.asarray(lung_mask(volume, path).array)[:, :, 0].T != 0  # (row, column)
    except ValueError:  # no lungs in this slice (an abdominal slice, or fully consolidated)
        return DicomSlice(hu, body_box(hu), None, pixel)
    return DicomSlice(hu, field_box(hu, lungs, pixel), lungs, pixel)


def field_box(
    hu: npt.NDArray[np.floating],
    lungs: npt.NDArray[np.bool_] | None,
    pixel_mm: tuple[float, float],
) -> tuple[slice, slice]:
    """The part of an HU slice the networks see, framed as the slices they learnt on.

    MedSeg's and COVID-SemiSeg's 8-bit slices show the thoracic cavity from edge to edge (the
    lungs' box spans 92-100 % of each image side), whatever the patient's size. A CT's slice is
    wider: the body and often more, so cropped to the body its lungs are smaller than any lung the
    networks saw, and a network trained from scratch on 50 slices then marks most of a normal
    lung as lesion (86 % of lungmask's normal slices against 15 % with this framing; benchmarks/
    RESULTS.md). The field is therefore the lungs' bounding box, each side grown about its centre
    (inside the slice) to at least :data:`MIN_FIELD_MM`, so that a small field of view or a slice
    near the apex is not magnified beyond what training showed. Without lungs: :func:`body_box`.

    Parameters
    ----------
    hu
        The slice (rows, columns), in HU.
    lungs
        Its lung pixels (same shape), or ``None``.
    pixel_mm
        Pixel size (mm) along rows and columns.
    """
    if lungs is None or not lungs.any():
        return body_box(np.asarray(hu, dtype=np.float32))
    rows, cols = np.nonzero(lungs)
    box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
    return grow_field(box, hu.shape, pixel_mm)


def grow_field(
    box: tuple[slice, slice], shape: tuple[int, ...], pixel_mm: tuple[float, float]
) -> tuple[slice, slice]:
    """The lungs' ``box`` (rows, columns) grown as :func:`field_box` grows it, in a slice of
    ``shape``."""
    return (
        _grow(box[0].start, box[0].stop, shape[0], MIN_FIELD_MM / pixel_mm[0]),
        _grow(box[1].start, box[1].stop, shape[1], MIN_FIELD_MM / pixel_mm[1]),
    )


def _grow(low: int, high: int, size: int, least: float) -> slice:
    """``[low, high)`` grown about its centre to at least ``least`` pixels, inside ``[0, size)``."""
    extra = max(0, math.ceil(least) - (high - low))
    low, high = low - extra // 2, high + extra - extra // 2
    if low < 0:
        low, high = 0, high - low
    if high > size:
        low, high = max(0, low - (high - size)), size
    return slice(low, high)


def body_box(hu: npt.NDArray[np.float32]) -> tuple[slice, slice]:
    """Bounding box of the body: the largest component above -500 HU, holes filled."""
    labels, count = ndimage.label(ndimage.binary_opening(hu > -500, iterations=2))
    if count == 0:
        return slice(None), slice(None)
    sizes = ndimage.sum_labels(np.ones_like(hu), labels, index=np.arange(1, count + 1))
    body = labels == 1 + int(np.argmax(sizes))
    rows, cols = np.nonzero(body)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def window_hu(
    hu: npt.NDArray[np.float32], window: tuple[float, float] = HU_WINDOW
) -> npt.NDArray[np.uint8]:
    """HU values mapped linearly from ``window`` (low, high) to 0..255, clipped."""
    low, high = window
    return np.round(np.clip((hu - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def fit_hu_window(
    images: list[npt.NDArray[np.uint8]], hu_slices: list[npt.NDArray[np.float32]], step: float = 25
) -> tuple[float, float]:
    """The HU window that makes body-cropped HU slices look like the 8-bit ``images``.

    Grid search over (low, high) minimising the L1 distance between the cumulative grey-level
    histograms of the windowed HU pixels and the 8-bit pixels, both pooled over all slices.
    """
    target = np.cumsum(np.bincount(np.concatenate([i.ravel() for i in images]), minlength=256))
    target = target / target[-1]
    hu = np.concatenate([s[body_box(s)].ravel() for s in hu_slices])
    best = (np.inf, HU_WINDOW)
    for low in np.arange(-1500, -800 + step, step):
        for high in np.arange(-200, 500 + step, step):
            grey = np.round(np.clip((hu - low) / (high - low), 0, 1) * 255).astype(np.int64)
            cdf = np.cumsum(np.bincount(grey, minlength=256)) / grey.size
            distance = float(np.abs(cdf - target).sum())
            if distance < best[0]:
                best = (distance, (float(low), float(high)))
    return best[1]


def load_labelled(
    cases: list[Case],
) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]:
    """Read and check every (image, mask) pair; raises ValueError naming a bad file."""
    pairs = []
    for case in cases:
        if case.image is None or case.label is None:
            raise ValueError(f"case {case.case_id}: image or mask missing")
        image = read_slice(case.image)
        pairs.append((image, read_mask(case.label, image.shape)))
    return pairs


def read_consolidation(path: Path, lesion: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Read a class map (0/1/2) that must agree with the ``lesion`` mask; its consolidation.

    Raises
    ------
    ValueError
        If the map's size differs from the mask's, it holds other values, or its lesion pixels
        (1 or 2) are not exactly the mask's; the message names the file.
    """
    try:
        with Image.open(path) as im:
            classes = np.asarray(im.convert("L") if im.mode not in ("L", "P") else im)
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
    if classes.shape != lesion.shape:
        raise ValueError(
            f"{path}: class map size {classes.shape[::-1]} differs from image {lesion.shape[::-1]}"
        )
    values = set(np.unique(classes).tolist())
    if not values <= {0, 1, 2}:
        raise ValueError(f"{path}: class values must be 0/1/2, found {sorted(values)[:8]}")
    disagree = int(np.count_nonzero((classes > 0) != lesion))
    if disagree:
        raise ValueError(f"{path}: {disagree} pixels disagree with the lesion mask")
    return classes == 2


def load_consolidation(
    data_dir: Path, cases: list[Case], masks: list[npt.NDArray[np.bool_]]
) -> list[npt.NDArray[np.bool_]]:
    """The consolidation of every case from ``data_dir/classes/<stem>.png`` (checked).

    Raises
    ------
    ValueError
        If a class map is missing or bad (:func:`read_consolidation`); the message names it.
    """
    folder = data_dir / CLASS_FOLDER
    out = []
    for case, mask in zip(cases, masks, strict=True):
        stem = case.image.stem if case.image is not None else case.case_id
        found = [p for p in folder.glob(f"{stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise ValueError(
                f"{folder / stem}.png: class map missing (training.classes needs one per slice)"
            )
        out.append(read_consolidation(found[0], mask))
    return out
